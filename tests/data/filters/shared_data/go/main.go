// shared_data: a request counter in shared data, updated with compare-and-
// swap (a test filter for wasmkit's shared data, built with
// scripts/build-go.sh).
//
// Every request reads "hits" (a decimal number, absent = 0) with its CAS
// value and writes the number plus one with that CAS. When another writer got
// in between (CAS mismatch) it reads again and retries, up to maxAttempts
// times. The request goes upstream with x-hits set to the number it wrote and
// x-attempts to the attempts it took; a log line says the same.
//
// A request with an x-probe-cas header N also writes key "probe" with CAS N
// (whether or not the key exists) and logs the outcome as
// "shared_data: probe with cas N: RESULT".
package main

import (
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const (
	key         = "hits"
	maxAttempts = 8
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &counterPlugin{} })
}

type counterPlugin struct {
	types.DefaultPluginContext
}

func (*counterPlugin) NewHttpContext(uint32) types.HttpContext { return &counterStream{} }

type counterStream struct {
	types.DefaultHttpContext
}

// bump adds one to the counter; it returns the value written and the attempts.
func bump() (int, int, error) {
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		current := 0
		raw, cas, err := proxywasm.GetSharedData(key)
		switch {
		case errors.Is(err, types.ErrorStatusNotFound):
			cas = 0
		case err != nil:
			return 0, attempt, err
		default:
			if current, err = strconv.Atoi(string(raw)); err != nil {
				return 0, attempt, errors.New("not a number: " + strconv.Quote(string(raw)))
			}
		}
		next := current + 1
		err = proxywasm.SetSharedData(key, []byte(strconv.Itoa(next)), cas)
		if err == nil {
			return next, attempt, nil
		}
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			return 0, attempt, err
		}
		proxywasm.LogWarnf("shared_data: cas %d is stale, retrying", cas)
	}
	return 0, maxAttempts, errors.New("gave up after " + strconv.Itoa(maxAttempts) + " attempts")
}

func (*counterStream) OnHttpRequestHeaders(int, bool) types.Action {
	if raw, err := proxywasm.GetHttpRequestHeader("x-probe-cas"); err == nil {
		probe(raw)
	}
	n, attempts, err := bump()
	if err != nil {
		proxywasm.LogErrorf("shared_data: cannot count: %v", err)
		return types.ActionContinue
	}
	proxywasm.LogInfof("shared_data: hits=%d after %d attempt(s)", n, attempts)
	_ = proxywasm.ReplaceHttpRequestHeader("x-hits", strconv.Itoa(n))
	_ = proxywasm.ReplaceHttpRequestHeader("x-attempts", strconv.Itoa(attempts))
	return types.ActionContinue
}

// probe writes "probe" with a CAS the caller chose and logs what the host said.
func probe(raw string) {
	cas, err := strconv.ParseUint(raw, 10, 32)
	if err != nil {
		proxywasm.LogErrorf("shared_data: bad x-probe-cas %q", raw)
		return
	}
	result := "ok"
	if err := proxywasm.SetSharedData("probe", []byte("probed with cas "+raw), uint32(cas)); err != nil {
		result = err.Error()
	}
	proxywasm.LogInfo("shared_data: probe with cas " + raw + ": " + result)
}
