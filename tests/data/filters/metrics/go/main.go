// metrics: a counter, a gauge and a histogram (a test filter for wasmkit's
// metrics, built with scripts/build-go.sh).
//
// At start it defines counter "go_requests", gauge "go_active" and histogram
// "go_path_length". Each request increments the counter, adds one to the gauge
// and records the length of its :path in the histogram; the gauge goes down by
// one when the stream ends. The response headers callback reads counter and
// gauge back and logs "metrics: requests=N active=M".
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &metricsPlugin{} })
}

type metricsPlugin struct {
	types.DefaultPluginContext
	requests   proxywasm.MetricCounter
	active     proxywasm.MetricGauge
	pathLength proxywasm.MetricHistogram
}

func (p *metricsPlugin) OnPluginStart(int) types.OnPluginStartStatus {
	// The SDK panics if the host refuses a definition.
	p.requests = proxywasm.DefineCounterMetric("go_requests")
	p.active = proxywasm.DefineGaugeMetric("go_active")
	p.pathLength = proxywasm.DefineHistogramMetric("go_path_length")
	proxywasm.LogInfof("metrics: defined ids %d %d %d", p.requests, p.active, p.pathLength)
	return types.OnPluginStartStatusOK
}

func (p *metricsPlugin) NewHttpContext(uint32) types.HttpContext {
	return &metricsStream{plugin: p}
}

type metricsStream struct {
	types.DefaultHttpContext
	plugin *metricsPlugin
}

func (s *metricsStream) OnHttpRequestHeaders(int, bool) types.Action {
	p := s.plugin
	p.requests.Increment(1)
	p.active.Add(1)
	path, err := proxywasm.GetHttpRequestHeader(":path")
	if err != nil {
		proxywasm.LogErrorf("metrics: no :path: %v", err)
	}
	p.pathLength.Record(uint64(len(path)))
	return types.ActionContinue
}

func (s *metricsStream) OnHttpResponseHeaders(int, bool) types.Action {
	p := s.plugin
	proxywasm.LogInfof("metrics: requests=%d active=%d", p.requests.Value(), p.active.Value())
	return types.ActionContinue
}

func (s *metricsStream) OnHttpStreamDone() {
	s.plugin.active.Add(-1)
}
