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
// whitespace outside strings removed, new strings are written by
// gjson.AppendJSONString (with HTML escaping off). It then logs
// "json_rewrite: rewrote N bytes" (N: the size of the body it read). Any other
// body (including one that is not UTF-8, which JSON must be) is passed on
// unchanged with "json_rewrite: not json". An empty configuration means {}; an
// invalid one makes OnPluginStart fail.
//
// JSON is read with github.com/tidwall/gjson: gjson.ValidBytes checks the
// document, Result.ForEach walks an object's members in order with each key
// and value as written (Raw) and decoded (String), so repeated keys, key
// spellings and number text survive the rewrite; github.com/tidwall/pretty
// (gjson's own dependency) compacts the values.
//
// The same filter, byte for byte in its output, exists in AssemblyScript and
// Rust next to this module (one difference: Go's JSON writers escape U+2028
// and U+2029 in new strings, the others write them as they are; both are
// valid JSON).
package main

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/tidwall/gjson"
	"github.com/tidwall/pretty"
)

const filterName = "json_rewrite"

type setField struct {
	key, value string
}

type config struct {
	set    []setField
	remove []string
}

// main never runs in a c-shared (WASI reactor) module; init registers the plugin.
func main() {}

func init() {
	// New strings are written as the Rust and AssemblyScript versions write
	// them: "<", ">" and "&" as they are.
	gjson.SetEscapeHTML(false)
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

func removed(cfg *config, key string) bool {
	for _, k := range cfg.remove {
		if k == key {
			return true
		}
	}
	return false
}

// validJSON: one JSON document, in UTF-8.
func validJSON(b []byte) bool {
	return utf8.Valid(b) && gjson.ValidBytes(b)
}

// rewrite returns the rewritten body, or false when body is not one JSON object.
func rewrite(body []byte, cfg *config) ([]byte, bool) {
	if !validJSON(body) {
		return nil, false
	}
	doc := gjson.ParseBytes(body)
	if !doc.IsObject() {
		return nil, false
	}
	out := make([]byte, 0, len(body)+16)
	setDone := make([]bool, len(cfg.set))
	out = append(out, '{')
	doc.ForEach(func(key, value gjson.Result) bool {
		name := key.String()
		if removed(cfg, name) {
			return true
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, key.Raw...)
		out = append(out, ':')
		for i, f := range cfg.set {
			if f.key == name {
				setDone[i] = true
				out = gjson.AppendJSONString(out, f.value)
				return true
			}
		}
		out = append(out, pretty.Ugly([]byte(value.Raw))...)
		return true
	})
	for i, f := range cfg.set {
		if setDone[i] {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = gjson.AppendJSONString(out, f.key)
		out = append(out, ':')
		out = gjson.AppendJSONString(out, f.value)
	}
	return append(out, '}'), true
}

// parseConfig reads the configuration; an empty (all-whitespace) one means {}.
func parseConfig(raw []byte) (*config, error) {
	cfg := &config{}
	if len(bytes.TrimLeft(raw, " \t\n\r")) == 0 {
		return cfg, nil
	}
	if !validJSON(raw) {
		return nil, errors.New("not valid JSON")
	}
	doc := gjson.ParseBytes(raw)
	if !doc.IsObject() {
		return nil, errors.New("the configuration must be a JSON object")
	}
	seenSet, seenRemove := false, false
	var err error
	doc.ForEach(func(key, value gjson.Result) bool {
		switch key.String() {
		case "set":
			if seenSet {
				err = errors.New(`duplicate key "set"`)
				return false
			}
			seenSet = true
			if !value.IsObject() {
				err = errors.New(`"set" must be an object`)
				return false
			}
			value.ForEach(func(k, v gjson.Result) bool {
				if v.Type != gjson.String {
					err = errors.New(`"set": every value must be a string`)
					return false
				}
				for _, have := range cfg.set {
					if have.key == k.String() {
						err = errors.New(`"set": duplicate field`)
						return false
					}
				}
				cfg.set = append(cfg.set, setField{k.String(), v.Str})
				return true
			})
		case "remove":
			if seenRemove {
				err = errors.New(`duplicate key "remove"`)
				return false
			}
			seenRemove = true
			if !value.IsArray() {
				err = errors.New(`"remove" must be an array`)
				return false
			}
			value.ForEach(func(_, item gjson.Result) bool {
				if item.Type != gjson.String {
					err = errors.New(`"remove": every item must be a string`)
					return false
				}
				cfg.remove = append(cfg.remove, item.Str)
				return true
			})
		default:
			err = errors.New("unknown key " + strconv.Quote(key.String()) + ` (expected "set" or "remove")`)
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	return cfg, nil
}
