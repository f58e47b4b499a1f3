module wasmkit/benchmarks/peers/proxytest

// The peer harness for benchmarks/bench_peers.py: the Go SDK's proxytest
// driving a compiled .wasm (wasm mode, wazero), built natively by
// scripts/build-peers.sh.
go 1.24

// The same SDK pseudo-version as samples/filters/add_headers/go.
require github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-20260105142703-44c7d5847745

require github.com/tetratelabs/wazero v1.7.2 // indirect
