// authorize: a proxy-wasm HTTP filter written against proxy-wasm-go-sdk
// (pinned in go.mod), built by Go >= 1.24 itself with scripts/build-go.sh.
//
// Plugin configuration (JSON; "header" required, "tokens" optional):
//
//	{"header": "x-token", "tokens": ["t1", "t2"]}
//
// On request headers the filter reads the configured header. The request is
// let through (log "authorize: allowed") when the value is not empty and, if
// "tokens" is given, equals one of them ("tokens": [] lets nothing through).
// Otherwise (log "authorize: denied") the client gets a local reply 403 with
// body "forbidden\n" and header "x-denied-by: authorize", and the request
// never goes upstream. An invalid configuration makes OnPluginStart fail.
//
// The same filter exists in AssemblyScript and Rust next to this module.
package main

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const filterName = "authorize"

type config struct {
	header string
	tokens [][]byte // nil: any non-empty value passes
}

// main never runs in a c-shared (WASI reactor) module; init registers the plugin.
func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &authorizeRoot{} })
}

type authorizeRoot struct {
	types.DefaultPluginContext
	cfg *config
}

func (r *authorizeRoot) OnPluginStart(int) types.OnPluginStartStatus {
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

func (r *authorizeRoot) NewHttpContext(uint32) types.HttpContext {
	return &authorizeStream{cfg: r.cfg}
}

type authorizeStream struct {
	types.DefaultHttpContext
	cfg *config
}

func (s *authorizeStream) OnHttpRequestHeaders(int, bool) types.Action {
	value, err := proxywasm.GetHttpRequestHeader(s.cfg.header)
	if err != nil {
		value = ""
	}
	if allowed(s.cfg, []byte(value)) {
		proxywasm.LogInfo(filterName + ": allowed")
		return types.ActionContinue
	}
	proxywasm.LogInfo(filterName + ": denied")
	if err := proxywasm.SendHttpResponse(403, [][2]string{{"x-denied-by", "authorize"}},
		[]byte("forbidden\n"), -1); err != nil {
		proxywasm.LogError(filterName + ": cannot send the local reply: " + err.Error())
	}
	return types.ActionPause
}

func allowed(cfg *config, value []byte) bool {
	if len(value) == 0 {
		return false
	}
	if cfg.tokens == nil {
		return true
	}
	for _, t := range cfg.tokens {
		if bytes.Equal(t, value) {
			return true
		}
	}
	return false
}

// parseConfig reads the configuration: "header" must be a non-empty string,
// "tokens" (optional) an array of strings; other keys are refused.
func parseConfig(raw []byte) (*config, error) {
	doc, err := parseJSON(raw)
	if err != nil {
		return nil, err
	}
	if doc.kind != jsonObject {
		return nil, errors.New("the configuration must be a JSON object")
	}
	cfg := &config{}
	seenHeader, seenTokens := false, false
	for _, m := range doc.members {
		switch string(m.key) {
		case "header":
			if seenHeader {
				return nil, errors.New(`duplicate key "header"`)
			}
			seenHeader = true
			if m.value.kind != jsonString || len(m.value.str) == 0 {
				return nil, errors.New(`"header" must be a non-empty string`)
			}
			cfg.header = string(m.value.str)
		case "tokens":
			if seenTokens {
				return nil, errors.New(`duplicate key "tokens"`)
			}
			seenTokens = true
			if m.value.kind != jsonArray {
				return nil, errors.New(`"tokens" must be an array of strings`)
			}
			cfg.tokens = [][]byte{}
			for _, item := range m.value.items {
				if item.kind != jsonString {
					return nil, errors.New(`"tokens": every item must be a string`)
				}
				cfg.tokens = append(cfg.tokens, item.str)
			}
		default:
			return nil, errors.New("unknown key " + strconv.Quote(string(m.key)) + ` (expected "header" or "tokens")`)
		}
	}
	if !seenHeader {
		return nil, errors.New(`"header" is required`)
	}
	return cfg, nil
}
