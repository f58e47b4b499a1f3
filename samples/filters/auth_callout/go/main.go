// auth_callout: a proxy-wasm HTTP filter written against proxy-wasm-go-sdk
// (pinned in go.mod), built by Go >= 1.24 itself with scripts/build-go.sh.
//
// Plugin configuration (JSON; both keys required):
//
//	{"cluster": "auth", "path": "/check"}
//
// On request headers the filter asks the cluster with an HTTP callout
// (:method GET, :path from the configuration, :authority = the cluster name,
// plus the request's authorization header when it has a non-empty one;
// timeout 5000 ms) and pauses the request. When the answer's :status is 200 it
// adds "x-auth-checked: yes" to the request and resumes it (log
// "auth_callout: allowed"); any other answer, a failed call or a timeout gets
// a local reply 403 with body "denied by auth\n" (log
// "auth_callout: denied (status S)", or "auth_callout: denied (no answer)"
// when the answer has no headers). When the call cannot be dispatched at all
// (e.g. unknown cluster) the client gets a local reply 503 with body
// "auth unavailable\n" (warning "auth_callout: cannot call <cluster>").
//
// The configuration is read with github.com/tidwall/gjson (validated, then
// walked member by member, so that repeated and unknown keys can be refused).
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

const (
	filterName = "auth_callout"
	timeoutMs  = 5000
)

type config struct {
	cluster, path string
}

// main never runs in a c-shared (WASI reactor) module; init registers the plugin.
func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &calloutRoot{} })
}

type calloutRoot struct {
	types.DefaultPluginContext
	cfg *config
}

func (r *calloutRoot) OnPluginStart(int) types.OnPluginStartStatus {
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

func (r *calloutRoot) NewHttpContext(uint32) types.HttpContext {
	return &calloutStream{cfg: r.cfg}
}

type calloutStream struct {
	types.DefaultHttpContext
	cfg *config
}

func (s *calloutStream) OnHttpRequestHeaders(int, bool) types.Action {
	headers := [][2]string{
		{":method", "GET"},
		{":path", s.cfg.path},
		{":authority", s.cfg.cluster},
	}
	if auth, err := proxywasm.GetHttpRequestHeader("authorization"); err == nil && auth != "" {
		headers = append(headers, [2]string{"authorization", auth})
	}
	if _, err := proxywasm.DispatchHttpCall(s.cfg.cluster, headers, nil, nil, timeoutMs, s.onAnswer); err != nil {
		proxywasm.LogWarn(filterName + ": cannot call " + s.cfg.cluster)
		s.reply(503, "auth unavailable\n")
	}
	return types.ActionPause
}

func (s *calloutStream) onAnswer(numHeaders, bodySize, numTrailers int) {
	status, found := "", false
	if numHeaders > 0 {
		// The SDK reads call-response headers only as a whole map.
		if headers, err := proxywasm.GetHttpCallResponseHeaders(); err == nil {
			for _, h := range headers {
				if h[0] == ":status" {
					status, found = h[1], true
					break
				}
			}
		}
	}
	if found && status == "200" {
		if err := proxywasm.AddHttpRequestHeader("x-auth-checked", "yes"); err != nil {
			proxywasm.LogError(filterName + ": cannot add x-auth-checked: " + err.Error())
		}
		if err := proxywasm.ResumeHttpRequest(); err != nil {
			proxywasm.LogError(filterName + ": cannot resume the request: " + err.Error())
		}
		proxywasm.LogInfo(filterName + ": allowed")
		return
	}
	if found {
		proxywasm.LogInfo(filterName + ": denied (status " + status + ")")
	} else {
		proxywasm.LogInfo(filterName + ": denied (no answer)")
	}
	s.reply(403, "denied by auth\n")
}

func (s *calloutStream) reply(status uint32, body string) {
	if err := proxywasm.SendHttpResponse(status, nil, []byte(body), -1); err != nil {
		proxywasm.LogError(filterName + ": cannot send the local reply: " + err.Error())
	}
}

// parseConfig reads the configuration: "cluster" and "path", both non-empty
// strings; other keys are refused.
func parseConfig(raw []byte) (*config, error) {
	if !utf8.Valid(raw) || !gjson.ValidBytes(raw) {
		return nil, errors.New("not valid JSON")
	}
	doc := gjson.ParseBytes(raw)
	if !doc.IsObject() {
		return nil, errors.New("the configuration must be a JSON object")
	}
	var cluster, path *string
	var err error
	doc.ForEach(func(k, value gjson.Result) bool {
		var slot **string
		switch k.String() {
		case "cluster":
			slot = &cluster
		case "path":
			slot = &path
		default:
			err = errors.New("unknown key " + strconv.Quote(k.String()) + ` (expected "cluster" or "path")`)
			return false
		}
		key := strconv.Quote(k.String())
		if *slot != nil {
			err = errors.New("duplicate key " + key)
			return false
		}
		if value.Type != gjson.String || value.Str == "" {
			err = errors.New(key + " must be a non-empty string")
			return false
		}
		v := value.Str
		*slot = &v
		return true
	})
	if err != nil {
		return nil, err
	}
	if cluster == nil {
		return nil, errors.New(`"cluster" is required`)
	}
	if path == nil {
		return nil, errors.New(`"path" is required`)
	}
	return &config{cluster: *cluster, path: *path}, nil
}
