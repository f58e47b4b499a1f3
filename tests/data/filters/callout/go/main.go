// callout: asks the "auth" cluster about every request before letting it
// through (a test filter for wasmkit's HTTP callouts, built with
// scripts/build-go.sh).
//
// On request headers it dispatches GET /check to cluster "auth" (authority
// "auth", the client's x-user header passed along) and pauses the request.
// When the answer arrives it logs the status and body; a 200 resumes the
// request with x-auth set to the answer's body, anything else (or no answer
// at all) gets a 403 local reply.
package main

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// main never runs in a c-shared module; init registers the plugin.
func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &authPlugin{} })
}

type authPlugin struct {
	types.DefaultPluginContext
}

func (*authPlugin) NewHttpContext(uint32) types.HttpContext { return &authStream{} }

type authStream struct {
	types.DefaultHttpContext
}

func (s *authStream) OnHttpRequestHeaders(int, bool) types.Action {
	headers := [][2]string{
		{":method", "GET"},
		{":path", "/check"},
		{":authority", "auth"},
	}
	if user, err := proxywasm.GetHttpRequestHeader("x-user"); err == nil {
		headers = append(headers, [2]string{"x-user", user})
	}
	token, err := proxywasm.DispatchHttpCall("auth", headers, nil, nil, 5000, s.onAuthAnswer)
	if err != nil {
		proxywasm.LogErrorf("callout: dispatch failed: %v", err)
		_ = proxywasm.SendHttpResponse(503, nil, []byte("auth unavailable"), -1)
		return types.ActionPause
	}
	proxywasm.LogInfof("callout: sent token %d", token)
	return types.ActionPause
}

func (s *authStream) onAuthAnswer(numHeaders, bodySize, numTrailers int) {
	status := ""
	if headers, err := proxywasm.GetHttpCallResponseHeaders(); err == nil {
		for _, h := range headers {
			if h[0] == ":status" {
				status = h[1]
			}
		}
	}
	var body []byte
	if bodySize > 0 {
		b, err := proxywasm.GetHttpCallResponseBody(0, bodySize)
		if err != nil {
			proxywasm.LogErrorf("callout: cannot read the answer body: %v", err)
		}
		body = b
	}
	proxywasm.LogInfo("callout: auth answered status=" + strconv.Quote(status) +
		" headers=" + strconv.Itoa(numHeaders) + " body=" + strconv.Quote(string(body)))
	if status == "200" {
		if err := proxywasm.AddHttpRequestHeader("x-auth", string(body)); err != nil {
			proxywasm.LogErrorf("callout: cannot add x-auth: %v", err)
		}
		if err := proxywasm.ResumeHttpRequest(); err != nil {
			proxywasm.LogErrorf("callout: cannot resume: %v", err)
		}
		return
	}
	reason := "denied by auth (status " + status + ")"
	if status == "" {
		reason = "auth did not answer"
	}
	if err := proxywasm.SendHttpResponse(403, [][2]string{{"x-denied-by", "callout"}},
		[]byte(reason), -1); err != nil {
		proxywasm.LogErrorf("callout: cannot send the local reply: %v", err)
	}
}
