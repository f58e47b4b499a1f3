// ticks: counts timer ticks of its plugin (a test filter for wasmkit's tick
// scheduling, built with scripts/build-go.sh).
//
// The plugin configuration is the tick period in milliseconds (default 100).
// Every tick is counted, logged as "ticks: tick N" and stored in shared data
// under "ticks"; after five ticks the ticker is stopped (period 0). Each HTTP
// response gets an x-ticks header with the count so far.
package main

import (
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const maxTicks = 5

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &tickPlugin{} })
}

type tickPlugin struct {
	types.DefaultPluginContext
	count int
}

func (p *tickPlugin) OnPluginStart(int) types.OnPluginStartStatus {
	period := uint32(100)
	if raw, err := proxywasm.GetPluginConfiguration(); err == nil && len(raw) > 0 {
		n, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 32)
		if err != nil {
			proxywasm.LogErrorf("ticks: bad period %q", raw)
			return types.OnPluginStartStatusFailed
		}
		period = uint32(n)
	}
	if err := proxywasm.SetTickPeriodMilliSeconds(period); err != nil {
		proxywasm.LogErrorf("ticks: cannot set the tick period: %v", err)
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfof("ticks: period %d ms", period)
	return types.OnPluginStartStatusOK
}

func (p *tickPlugin) OnTick() {
	p.count++
	proxywasm.LogInfof("ticks: tick %d", p.count)
	if err := proxywasm.SetSharedData("ticks", []byte(strconv.Itoa(p.count)), 0); err != nil {
		proxywasm.LogErrorf("ticks: cannot store the count: %v", err)
	}
	if p.count == maxTicks {
		if err := proxywasm.SetTickPeriodMilliSeconds(0); err != nil {
			proxywasm.LogErrorf("ticks: cannot stop the ticker: %v", err)
		}
		proxywasm.LogInfo("ticks: stopped")
	}
}

func (p *tickPlugin) NewHttpContext(uint32) types.HttpContext { return &tickStream{plugin: p} }

type tickStream struct {
	types.DefaultHttpContext
	plugin *tickPlugin
}

func (s *tickStream) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("x-ticks", strconv.Itoa(s.plugin.count)); err != nil {
		proxywasm.LogErrorf("ticks: cannot add x-ticks: %v", err)
	}
	return types.ActionContinue
}
