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
// The configuration is read with github.com/tidwall/gjson (validated, then
// walked member by member, so that repeated and unknown keys can be refused);
// encoding/json would work too but adds about 100 KB of reflection code to
// the module and lets a repeated key overwrite the first silently.
//
// The same filter exists in AssemblyScript and Rust next to this module.
package main

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/tidwall/gjson"
)

const filterName = "authorize"

type config struct {
	header string
	tokens []string // nil: any non-empty value passes
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
	if allowed(s.cfg, value) {
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

func allowed(cfg *config, value string) bool {
	if len(value) == 0 {
		return false
	}
	if cfg.tokens == nil {
		return true
	}
	for _, t := range cfg.tokens {
		if t == value {
			return true
		}
	}
	return false
}

// parseConfig reads the configuration: "header" must be a non-empty string,
// "tokens" (optional) an array of strings; other keys are refused.
func parseConfig(raw []byte) (*config, error) {
	if !utf8.Valid(raw) || !gjson.ValidBytes(raw) {
		return nil, errors.New("not valid JSON")
	}
	doc := gjson.ParseBytes(raw)
	if !doc.IsObject() {
		return nil, errors.New("the configuration must be a JSON object")
	}
	cfg := &config{}
	seenHeader, seenTokens := false, false
	var err error
	doc.ForEach(func(key, value gjson.Result) bool {
		switch key.String() {
		case "header":
			if seenHeader {
				err = errors.New(`duplicate key "header"`)
				return false
			}
			seenHeader = true
			if value.Type != gjson.String || value.Str == "" {
				err = errors.New(`"header" must be a non-empty string`)
				return false
			}
			cfg.header = value.Str
		case "tokens":
			if seenTokens {
				err = errors.New(`duplicate key "tokens"`)
				return false
			}
			seenTokens = true
			if !value.IsArray() {
				err = errors.New(`"tokens" must be an array of strings`)
				return false
			}
			cfg.tokens = []string{}
			value.ForEach(func(_, item gjson.Result) bool {
				if item.Type != gjson.String {
					err = errors.New(`"tokens": every item must be a string`)
					return false
				}
				cfg.tokens = append(cfg.tokens, item.Str)
				return true
			})
		default:
			err = errors.New("unknown key " + strconv.Quote(key.String()) + ` (expected "header" or "tokens")`)
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	if !seenHeader {
		return nil, errors.New(`"header" is required`)
	}
	return cfg, nil
}
