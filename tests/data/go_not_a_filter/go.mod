module wasmkit/tests/not_a_filter

go 1.24
