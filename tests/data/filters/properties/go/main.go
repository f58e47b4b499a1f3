// properties: reads Envoy attributes and sets one of its own (a test filter
// for wasmkit's properties, built with scripts/build-go.sh).
//
// At start it logs the plugin's identity (plugin_root_id, plugin_name,
// plugin_vm_id). On request headers it logs request.path, request.url_path,
// request.method, request.host, request.headers["x-k"] and xds.route_name
// as "prop NAME=VALUE" (or "prop NAME missing: ERR"), then sets property
// "wasmkit_note" to "noted PATH" and reads it back. On response headers it
// logs response.code (an 8-byte little-endian integer) and reads the note
// again, to show it lives as long as the stream.
package main

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &propsPlugin{} })
}

type propsPlugin struct {
	types.DefaultPluginContext
}

func logProperty(path ...string) string {
	name := strings.Join(path, ".")
	raw, err := proxywasm.GetProperty(path)
	if err != nil {
		proxywasm.LogInfof("prop %s missing: %v", name, err)
		return ""
	}
	proxywasm.LogInfo("prop " + name + "=" + string(raw))
	return string(raw)
}

func (*propsPlugin) OnPluginStart(int) types.OnPluginStartStatus {
	logProperty("plugin_root_id")
	logProperty("plugin_name")
	logProperty("plugin_vm_id")
	return types.OnPluginStartStatusOK
}

func (*propsPlugin) NewHttpContext(uint32) types.HttpContext { return &propsStream{} }

type propsStream struct {
	types.DefaultHttpContext
}

const note = "wasmkit_note"

func (*propsStream) OnHttpRequestHeaders(int, bool) types.Action {
	path := logProperty("request", "path")
	logProperty("request", "url_path")
	logProperty("request", "method")
	logProperty("request", "host")
	logProperty("request", "headers", "x-k")
	logProperty("xds", "route_name")
	logProperty("plugin_root_id")
	logProperty("plugin_name")
	if err := proxywasm.SetProperty([]string{note}, []byte("noted "+path)); err != nil {
		proxywasm.LogErrorf("prop cannot set %s: %v", note, err)
	}
	logProperty(note)
	return types.ActionContinue
}

func (*propsStream) OnHttpResponseHeaders(int, bool) types.Action {
	raw, err := proxywasm.GetProperty([]string{"response", "code"})
	switch {
	case err != nil:
		proxywasm.LogInfof("prop response.code missing: %v", err)
	case len(raw) != 8:
		proxywasm.LogErrorf("prop response.code has %d bytes, not 8", len(raw))
	default:
		code := int64(binary.LittleEndian.Uint64(raw))
		proxywasm.LogInfo("prop response.code=" + strconv.FormatInt(code, 10))
	}
	logProperty(note)
	return types.ActionContinue
}
