module wasmkit/tests/go_higress

go 1.24
