// json_rewrite: a proxy-wasm HTTP filter written against proxy-wasm-go-sdk
// (pinned in go.mod), built by Go >= 1.24 itself with scripts/build-go.sh.
//
// Plugin configuration (JSON, both keys optional):
//
//	{"set": {"field": "value", ...}, "remove": ["field", ...]}
//
// For a response whose content-type contains application/json (compared
// case-insensitively) the filter drops content-length, buffers the whole body
// (its body callbacks return Pause until the end of the stream) and, if the
// body is one JSON object, rewrites its top level: members named in "remove"
// are dropped, members named in "set" get the configured string value (in
// place when present, appended in the configuration's order when not; removal
// happens first, so a key in both ends up appended). Output is compact:
// existing keys are copied as written, other values are copied with the
// whitespace outside strings removed, new strings are written with the escapes
// of jsonWriteString. It then logs "json_rewrite: rewrote N bytes" (N: the
// size of the body it read). Any other body is passed on unchanged with
// "json_rewrite: not json". An empty configuration means {}; an invalid one
// makes OnPluginStart fail.
//
// The same filter, byte for byte in its output, exists in AssemblyScript and
// Rust next to this module.
package main

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const filterName = "json_rewrite"

type setField struct {
	key, value []byte
}

type config struct {
	set    []setField
	remove [][]byte
}

// main never runs in a c-shared (WASI reactor) module; init registers the plugin.
func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &rewriteRoot{cfg: &config{}} })
}

type rewriteRoot struct {
	types.DefaultPluginContext
	cfg *config
}

func (r *rewriteRoot) OnPluginStart(int) types.OnPluginStartStatus {
	raw, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) && !errors.Is(err, types.ErrorStatusEmpty) {
		proxywasm.LogError(filterName + ": cannot read the plugin configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	cfg, err := parseConfig(raw)
	if err != nil {
		proxywasm.LogError(filterName + ": invalid configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	r.cfg = cfg
	return types.OnPluginStartStatusOK
}

func (r *rewriteRoot) NewHttpContext(uint32) types.HttpContext {
	return &rewriteStream{cfg: r.cfg}
}

type rewriteStream struct {
	types.DefaultHttpContext
	cfg    *config
	active bool // the response is JSON: buffer and rewrite its body
}

func (s *rewriteStream) OnHttpResponseHeaders(int, bool) types.Action {
	contentType, err := proxywasm.GetHttpResponseHeader("content-type")
	if err == nil && bytes.Contains(bytes.ToLower([]byte(contentType)), []byte("application/json")) {
		s.active = true
		if err := proxywasm.RemoveHttpResponseHeader("content-length"); err != nil {
			proxywasm.LogError(filterName + ": cannot remove content-length: " + err.Error())
		}
	}
	return types.ActionContinue
}

func (s *rewriteStream) OnHttpResponseBody(bodySize int, endOfStream bool) types.Action {
	if !s.active {
		return types.ActionContinue
	}
	if !endOfStream {
		return types.ActionPause // keep buffering until the whole body is here
	}
	var body []byte
	if bodySize > 0 {
		b, err := proxywasm.GetHttpResponseBody(0, bodySize)
		if err != nil {
			proxywasm.LogError(filterName + ": cannot read the body: " + err.Error())
			return types.ActionContinue
		}
		body = b
	}
	out, ok := rewrite(body, s.cfg)
	if !ok {
		proxywasm.LogInfo(filterName + ": not json")
		return types.ActionContinue
	}
	if err := proxywasm.ReplaceHttpResponseBody(out); err != nil {
		proxywasm.LogError(filterName + ": cannot replace the body: " + err.Error())
		return types.ActionContinue
	}
	proxywasm.LogInfo(filterName + ": rewrote " + strconv.Itoa(len(body)) + " bytes")
	return types.ActionContinue
}

func removed(cfg *config, key []byte) bool {
	for _, k := range cfg.remove {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// rewrite returns the rewritten body, or false when body is not one JSON object.
func rewrite(body []byte, cfg *config) ([]byte, bool) {
	doc, err := parseJSON(body)
	if err != nil || doc.kind != jsonObject {
		return nil, false
	}
	out := make([]byte, 0, len(body)+16)
	setDone := make([]bool, len(cfg.set))
	out = append(out, '{')
	first := true
	for _, m := range doc.members {
		if removed(cfg, m.key) {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, body[m.keyStart:m.keyEnd]...)
		out = append(out, ':')
		replaced := false
		for i, f := range cfg.set {
			if bytes.Equal(f.key, m.key) {
				setDone[i] = true
				out = jsonWriteString(out, f.value)
				replaced = true
				break
			}
		}
		if !replaced {
			out = jsonCompact(out, body[m.value.start:m.value.end])
		}
	}
	for i, f := range cfg.set {
		if setDone[i] {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = jsonWriteString(out, f.key)
		out = append(out, ':')
		out = jsonWriteString(out, f.value)
	}
	return append(out, '}'), true
}

// parseConfig reads the configuration; an empty (all-whitespace) one means {}.
func parseConfig(raw []byte) (*config, error) {
	cfg := &config{}
	if len(bytes.TrimLeft(raw, " \t\n\r")) == 0 {
		return cfg, nil
	}
	doc, err := parseJSON(raw)
	if err != nil {
		return nil, err
	}
	if doc.kind != jsonObject {
		return nil, errors.New("the configuration must be a JSON object")
	}
	seenSet, seenRemove := false, false
	for _, m := range doc.members {
		switch string(m.key) {
		case "set":
			if seenSet {
				return nil, errors.New(`duplicate key "set"`)
			}
			seenSet = true
			if m.value.kind != jsonObject {
				return nil, errors.New(`"set" must be an object`)
			}
			for _, f := range m.value.members {
				if f.value.kind != jsonString {
					return nil, errors.New(`"set": every value must be a string`)
				}
				for _, have := range cfg.set {
					if bytes.Equal(have.key, f.key) {
						return nil, errors.New(`"set": duplicate field`)
					}
				}
				cfg.set = append(cfg.set, setField{f.key, f.value.str})
			}
		case "remove":
			if seenRemove {
				return nil, errors.New(`duplicate key "remove"`)
			}
			seenRemove = true
			if m.value.kind != jsonArray {
				return nil, errors.New(`"remove" must be an array`)
			}
			for _, item := range m.value.items {
				if item.kind != jsonString {
					return nil, errors.New(`"remove": every item must be a string`)
				}
				cfg.remove = append(cfg.remove, item.str)
			}
		default:
			return nil, errors.New("unknown key " + strconv.Quote(string(m.key)) + ` (expected "set" or "remove")`)
		}
	}
	return cfg, nil
}
