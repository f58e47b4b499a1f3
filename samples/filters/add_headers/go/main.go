// add_headers: a proxy-wasm HTTP filter written against proxy-wasm-go-sdk
// (github.com/proxy-wasm/proxy-wasm-go-sdk, pinned in go.mod), built by Go
// >= 1.24 itself with scripts/build-go.sh:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o add_headers.wasm .
//
// The Go SDK does not look at the root id: the host may use any (the kit's
// tests use "add_headers", like the AssemblyScript and Rust versions).
//
// Plugin configuration (JSON, both keys optional, values are flat strings):
//
//	{"request": {"name": "value", ...}, "response": {"name": "value", ...}}
//
// Every configured request header is added in OnHttpRequestHeaders, every
// configured response header in OnHttpResponseHeaders, in the order given.
// An empty (or all-whitespace) configuration adds nothing. An invalid one is
// logged at error level and makes OnPluginStart fail, so the plugin does not
// start.
//
// The configuration is read with github.com/tidwall/gjson rather than
// encoding/json's maps, so that it keeps the order of the headers and any
// repeated names, and rejects what the Rust version rejects (unknown or
// repeated top-level keys, non-string values, empty header names, invalid
// JSON). One difference: gjson decodes an unpaired surrogate escape to U+FFFD
// where serde_json refuses it.
package main

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/tidwall/gjson"
)

const filterName = "add_headers"

type header struct {
	name, value string
}

type config struct {
	request, response []header
}

// main is required by the Go toolchain but never runs in a c-shared (WASI
// reactor) module; package initialisation runs in the exported _initialize.
func main() {}

func init() {
	proxywasm.SetPluginContext(func(contextID uint32) types.PluginContext {
		return &addHeadersRoot{}
	})
}

// addHeadersRoot is the plugin (root) context: it reads the configuration.
type addHeadersRoot struct {
	types.DefaultPluginContext
	cfg *config
}

func (r *addHeadersRoot) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	raw, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) && !errors.Is(err, types.ErrorStatusEmpty) {
		proxywasm.LogError(filterName + ": cannot read the plugin configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	if isBlank(raw) {
		// No configuration: a valid filter that adds nothing.
		r.cfg = &config{}
		return types.OnPluginStartStatusOK
	}
	if !utf8.Valid(raw) {
		proxywasm.LogError(filterName + ": invalid configuration: not UTF-8")
		return types.OnPluginStartStatusFailed
	}
	cfg, err := parseConfig(raw)
	if err != nil {
		proxywasm.LogError(filterName + ": invalid configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfo(filterName + ": configured " + strconv.Itoa(len(cfg.request)) +
		" request and " + strconv.Itoa(len(cfg.response)) + " response headers")
	r.cfg = cfg
	return types.OnPluginStartStatusOK
}

func (r *addHeadersRoot) NewHttpContext(contextID uint32) types.HttpContext {
	cfg := r.cfg
	if cfg == nil {
		cfg = &config{}
	}
	return &addHeaders{cfg: cfg}
}

// addHeaders is the per-stream HTTP context.
type addHeaders struct {
	types.DefaultHttpContext
	cfg *config
}

func (h *addHeaders) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	for _, hd := range h.cfg.request {
		if err := proxywasm.AddHttpRequestHeader(hd.name, hd.value); err != nil {
			proxywasm.LogError(filterName + ": cannot add request header " + strconv.Quote(hd.name) + ": " + err.Error())
		}
	}
	proxywasm.LogInfo(filterName + ": added " + strconv.Itoa(len(h.cfg.request)) + " request headers")
	return types.ActionContinue
}

func (h *addHeaders) OnHttpResponseHeaders(numHeaders int, endOfStream bool) types.Action {
	for _, hd := range h.cfg.response {
		if err := proxywasm.AddHttpResponseHeader(hd.name, hd.value); err != nil {
			proxywasm.LogError(filterName + ": cannot add response header " + strconv.Quote(hd.name) + ": " + err.Error())
		}
	}
	proxywasm.LogInfo(filterName + ": added " + strconv.Itoa(len(h.cfg.response)) + " response headers")
	return types.ActionContinue
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// parseConfig reads the configuration object. src must be valid UTF-8.
func parseConfig(src []byte) (*config, error) {
	if !gjson.ValidBytes(src) {
		return nil, errors.New("not valid JSON")
	}
	doc := gjson.ParseBytes(src)
	if !doc.IsObject() {
		return nil, errors.New("the configuration must be a JSON object")
	}
	cfg := &config{}
	seenReq, seenResp := false, false
	var err error
	doc.ForEach(func(k, value gjson.Result) bool {
		key := k.String()
		switch {
		case key == "request" && !seenReq:
			seenReq = true
			cfg.request, err = headerMap(key, value)
		case key == "response" && !seenResp:
			seenResp = true
			cfg.response, err = headerMap(key, value)
		case key == "request" || key == "response":
			err = errors.New("duplicate key " + strconv.Quote(key))
		default:
			err = errors.New("unknown key " + strconv.Quote(key) + ` (expected "request" or "response")`)
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// headerMap reads {"name": "value", ...} into an ordered list.
func headerMap(what string, value gjson.Result) ([]header, error) {
	if !value.IsObject() {
		return nil, errors.New(strconv.Quote(what) + " must be an object of string values")
	}
	out := []header{}
	var err error
	value.ForEach(func(k, v gjson.Result) bool {
		name := k.String()
		switch {
		case name == "":
			err = errors.New("empty header name in " + strconv.Quote(what))
		case v.Type != gjson.String:
			err = errors.New("header " + strconv.Quote(name) + " in " + strconv.Quote(what) + ": value must be a string")
		default:
			out = append(out, header{name, v.Str})
		}
		return err == nil
	})
	return out, err
}
