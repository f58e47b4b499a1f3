module wasmkit/tests/tcp_echo

// Go 1.24 is the first Go that builds proxy-wasm modules itself.
go 1.24

// The same pinned SDK pseudo-version as samples/filters/add_headers/go.
require github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-20260105142703-44c7d5847745
