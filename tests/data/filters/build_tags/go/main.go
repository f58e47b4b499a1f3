// build_tags: adds "x-tag: on" to requests when built with the build tag
// wasmkit_extra, "x-tag: off" otherwise (extra_on.go / extra_off.go).
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &root{} })
}

type root struct {
	types.DefaultPluginContext
}

func (*root) NewHttpContext(uint32) types.HttpContext { return &tagged{} }

type tagged struct {
	types.DefaultHttpContext
}

func (*tagged) OnHttpRequestHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpRequestHeader("x-tag", extra); err != nil {
		proxywasm.LogErrorf("cannot add x-tag: %v", err)
	}
	return types.ActionContinue
}
