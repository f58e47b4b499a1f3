// body_rewrite: buffers the whole response body and replaces it (a test
// filter for wasmkit's body buffering, built with scripts/build-go.sh).
//
// The response's content-length is dropped in OnHttpResponseHeaders (the
// body changes size). OnHttpResponseBody pauses until the end of the stream,
// so the host keeps buffering; at the end it reads the whole body and
// replaces it with "<rewritten>" + upper-cased body + "</rewritten>". Every
// body callback is logged as "body: N bytes, end=B".
package main

import (
	"bytes"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &rewritePlugin{} })
}

type rewritePlugin struct {
	types.DefaultPluginContext
}

func (*rewritePlugin) NewHttpContext(uint32) types.HttpContext { return &rewriteStream{} }

type rewriteStream struct {
	types.DefaultHttpContext
}

func (*rewriteStream) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.RemoveHttpResponseHeader("content-length"); err != nil {
		proxywasm.LogErrorf("body: cannot remove content-length: %v", err)
	}
	return types.ActionContinue
}

func (*rewriteStream) OnHttpResponseBody(bodySize int, endOfStream bool) types.Action {
	proxywasm.LogInfo("body: " + strconv.Itoa(bodySize) + " bytes, end=" + strconv.FormatBool(endOfStream))
	if !endOfStream {
		return types.ActionPause // keep buffering until the whole body is here
	}
	body, err := proxywasm.GetHttpResponseBody(0, bodySize)
	if err != nil {
		proxywasm.LogErrorf("body: cannot read the body: %v", err)
		return types.ActionContinue
	}
	out := append([]byte("<rewritten>"), bytes.ToUpper(body)...)
	out = append(out, "</rewritten>"...)
	if err := proxywasm.ReplaceHttpResponseBody(out); err != nil {
		proxywasm.LogErrorf("body: cannot replace the body: %v", err)
	}
	return types.ActionContinue
}
