module wasmkit/samples/authorize

// Go 1.24 is the first Go that builds proxy-wasm modules itself
// (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared, //go:wasmexport).
go 1.24

// The SDK has no release tags: pin one exact pseudo-version.
require github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-20260105142703-44c7d5847745

require github.com/tidwall/gjson v1.20.6

require (
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.3.0 // indirect
)
