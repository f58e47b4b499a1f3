// waf: a web application firewall filter on proxy-wasm-go-sdk, running the
// Coraza WAF library (github.com/corazawaf/coraza/v3) with the OWASP Core
// Rule Set, whose files are embedded in the module
// (github.com/corazawaf/coraza-coreruleset/v4); both are pinned in go.mod.
//
// Build (scripts/build-samples.sh does this):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared \
//	    -tags=no_fs_access,coraza.rule.multiphase_evaluation -o waf.go.wasm .
//
// no_fs_access is required: without it Coraza checks at start-up that it can
// write temporary files and fails, since a proxy-wasm module has no file
// system. coraza.rule.multiphase_evaluation evaluates each rule variable as
// soon as the request part it reads has arrived (query arguments with the
// headers, not only with the body).
//
// Plugin configuration: see pluginConfig in config.go. An empty configuration
// loads the CRS with blocking on:
//
//	{"directives": ["Include @coraza.conf-recommended",
//	                "Include @crs-setup.conf.example",
//	                "Include @owasp_crs/*.conf",
//	                "SecRuleEngine On"],
//	 "paranoia_level": 1, "inbound_anomaly_threshold": 5}
//
// For each request the filter feeds Coraza the connection (source.address,
// destination.address), the request line (:method, :path, request.protocol),
// the headers (with Host from :authority) and the body (buffered until its
// end, as Coraza's body processors need it whole: form, JSON, multipart, XML),
// then the response status and headers. Response bodies are not inspected.
//
// Every rule that matches with a message is logged at warn level:
//
//	waf: rule 941100 matched (phase 2, ARGS_GET:q): XSS Attack Detected via libinjection
//
// When Coraza interrupts the transaction the client gets a local reply
// instead (status from the rule, 403 for the CRS' anomaly-score blocking),
// with response code details "waf_rule_<id>" naming the interrupting rule
// ("waf_request_body_limit" for a body past SecRequestBodyLimit, a 413),
// headers x-waf-rule (that id) and x-waf-matched (the ids of every rule that
// matched and logged, comma-separated) and a JSON body:
//
//	{"blocked": true, "status": 403, "rule": 949110, "phase": "request_body",
//	 "matched": [{"id": 941100, "msg": "XSS Attack Detected via libinjection"}, ...]}
//
// A configuration Coraza refuses makes OnPluginStart fail, with Coraza's
// message logged at error level.
package main

import (
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	ctypes "github.com/corazawaf/coraza/v3/types"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const filterName = "waf"

// main never runs in a c-shared (WASI reactor) module; init registers the plugin.
func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &wafRoot{} })
}

type wafRoot struct {
	types.DefaultPluginContext
	waf coraza.WAF
	// streams maps Coraza transaction ids (the HTTP context ids) to their
	// stream, for the error callback, which only gets the transaction id.
	streams map[string]*wafStream
}

func (r *wafRoot) OnPluginStart(int) types.OnPluginStartStatus {
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
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().
		WithRootFS(coreruleset.FS).
		WithErrorCallback(r.logMatch).
		WithDirectives(cfg.directives).
		// Applied after the directives: see pluginConfig.RequestBodyLimit.
		WithRequestBodyLimit(cfg.requestBodyLimit).
		WithRequestBodyInMemoryLimit(cfg.requestBodyLimit))
	if err != nil {
		proxywasm.LogError(filterName + ": Coraza refused the configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	r.waf = waf
	r.streams = map[string]*wafStream{}
	proxywasm.LogInfo(filterName + ": ready")
	return types.OnPluginStartStatusOK
}

func (r *wafRoot) NewHttpContext(contextID uint32) types.HttpContext {
	return &wafStream{root: r, id: strconv.FormatUint(uint64(contextID), 10)}
}

// logMatch is Coraza's error callback, called for each matched rule that
// logs: one warn line, and the rule is kept for the stream's local reply.
func (r *wafRoot) logMatch(rule ctypes.MatchedRule) {
	if rule.Message() == "" {
		return
	}
	if s := r.streams[rule.TransactionID()]; s != nil {
		s.matched = append(s.matched, matchedRule{ID: rule.Rule().ID(), Msg: rule.Message()})
	}
	where := ""
	if data := rule.MatchedDatas(); len(data) > 0 {
		where = ", " + data[0].Variable().Name()
		if key := data[0].Key(); key != "" {
			where += ":" + key
		}
	}
	proxywasm.LogWarn(filterName + ": rule " + strconv.Itoa(rule.Rule().ID()) + " matched (phase " +
		strconv.Itoa(int(rule.Rule().Phase())) + where + "): " + rule.Message())
}

type wafStream struct {
	types.DefaultHttpContext
	root     *wafRoot
	id       string // the transaction id: the HTTP context id
	tx       ctypes.Transaction
	matched  []matchedRule // rules that matched and logged, in order
	protocol string
	bodySeen int  // request body bytes already given to Coraza
	bodyDone bool // phase 2 has run
	blocked  bool
}

func (s *wafStream) OnHttpRequestHeaders(_ int, endOfStream bool) types.Action {
	s.tx = s.root.waf.NewTransactionWithID(s.id)
	s.root.streams[s.id] = s
	tx := s.tx
	if tx.IsRuleEngineOff() {
		return types.ActionContinue
	}
	srcIP, srcPort := address("source")
	dstIP, dstPort := address("destination")
	tx.ProcessConnection(srcIP, srcPort, dstIP, dstPort)

	headers, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		proxywasm.LogError(filterName + ": cannot read the request headers: " + err.Error())
		return types.ActionContinue
	}
	var method, path, authority string
	for _, h := range headers {
		switch h[0] {
		case ":method":
			method = h[1]
		case ":path":
			path = h[1]
		case ":authority":
			authority = h[1]
		}
	}
	s.protocol = "HTTP/1.1"
	if p, err := proxywasm.GetProperty([]string{"request", "protocol"}); err == nil && len(p) > 0 {
		s.protocol = string(p)
	}
	tx.ProcessURI(path, method, s.protocol)
	if authority != "" {
		// HTTP/2 and Envoy carry the host as :authority; the CRS reads Host.
		tx.AddRequestHeader("Host", authority)
		if host, _, err := net.SplitHostPort(authority); err == nil {
			tx.SetServerName(host)
		} else {
			tx.SetServerName(authority)
		}
	}
	for _, h := range headers {
		if !strings.HasPrefix(h[0], ":") {
			tx.AddRequestHeader(h[0], h[1])
		}
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		return s.block("request_headers", it)
	}
	if endOfStream {
		return s.finishRequest()
	}
	// The headers go on; the body is held (Pause on each chunk) until phase 2
	// has judged it, so a blocked request's body never reaches the upstream.
	return types.ActionContinue
}

func (s *wafStream) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if s.blocked {
		return types.ActionPause
	}
	if s.tx == nil || s.bodyDone || s.tx.IsRuleEngineOff() {
		return types.ActionContinue
	}
	if !s.tx.IsRequestBodyAccessible() {
		// SecRequestBodyAccess Off: nothing to buffer; phase 2 runs at the end.
		if endOfStream {
			return s.finishRequest()
		}
		return types.ActionContinue
	}
	if bodySize > s.bodySeen {
		// bodySize counts the whole body buffered so far: read only the new bytes.
		chunk, err := proxywasm.GetHttpRequestBody(s.bodySeen, bodySize-s.bodySeen)
		if err != nil {
			proxywasm.LogError(filterName + ": cannot read the request body: " + err.Error())
			return types.ActionContinue
		}
		s.bodySeen = bodySize
		it, _, err := s.tx.WriteRequestBody(chunk)
		if err != nil {
			proxywasm.LogError(filterName + ": Coraza cannot take the request body: " + err.Error())
			return types.ActionContinue
		}
		if it != nil {
			return s.block("request_body", it)
		}
	}
	if !endOfStream {
		// Buffer: Coraza's body processors need the whole body.
		return types.ActionPause
	}
	return s.finishRequest()
}

// finishRequest runs phase 2 (request body rules and the CRS' inbound
// anomaly-score evaluation), with or without a body.
func (s *wafStream) finishRequest() types.Action {
	s.bodyDone = true
	it, err := s.tx.ProcessRequestBody()
	if err != nil {
		proxywasm.LogError(filterName + ": Coraza cannot process the request body: " + err.Error())
		return types.ActionContinue
	}
	if it != nil {
		return s.block("request_body", it)
	}
	return types.ActionContinue
}

func (s *wafStream) OnHttpResponseHeaders(int, bool) types.Action {
	if s.tx == nil || s.blocked || s.tx.IsRuleEngineOff() {
		return types.ActionContinue
	}
	if !s.bodyDone {
		// The request ended without a body callback (an upstream that
		// answered early): phase 2 still runs before phase 3.
		if action := s.finishRequest(); s.blocked {
			return action
		}
	}
	headers, err := proxywasm.GetHttpResponseHeaders()
	if err != nil {
		proxywasm.LogError(filterName + ": cannot read the response headers: " + err.Error())
		return types.ActionContinue
	}
	status := 0
	for _, h := range headers {
		if h[0] == ":status" {
			status, _ = strconv.Atoi(h[1])
		} else if !strings.HasPrefix(h[0], ":") {
			s.tx.AddResponseHeader(h[0], h[1])
		}
	}
	if it := s.tx.ProcessResponseHeaders(status, s.protocol); it != nil {
		return s.block("response_headers", it)
	}
	return types.ActionContinue
}

func (s *wafStream) OnHttpStreamDone() {
	if s.tx == nil {
		return
	}
	s.tx.ProcessLogging()
	_ = s.tx.Close()
	s.tx = nil
	delete(s.root.streams, s.id)
}

type matchedRule struct {
	ID  int    `json:"id"`
	Msg string `json:"msg"`
}

type blockedBody struct {
	Blocked bool          `json:"blocked"`
	Status  int           `json:"status"`
	Rule    int           `json:"rule"`
	Phase   string        `json:"phase"`
	Matched []matchedRule `json:"matched"`
}

// block answers the client with a local reply naming the interrupting rule
// and every rule that matched and logged.
func (s *wafStream) block(phase string, it *ctypes.Interruption) types.Action {
	s.blocked = true
	status := it.Status
	if status == 0 {
		status = 403
	}
	out := blockedBody{Blocked: true, Status: status, Rule: it.RuleID, Phase: phase, Matched: s.matched}
	if out.Matched == nil {
		out.Matched = []matchedRule{}
	}
	ids := make([]string, len(s.matched))
	for i, m := range s.matched {
		ids[i] = strconv.Itoa(m.ID)
	}
	body, _ := json.Marshal(out)
	body = append(body, '\n')
	rule := strconv.Itoa(it.RuleID)
	details := "waf_rule_" + rule
	if it.RuleID == 0 {
		// A body past SecRequestBodyLimit (Reject: 413): Coraza names no rule.
		details = "waf_request_body_limit"
	}
	proxywasm.LogWarn(filterName + ": blocked with " + strconv.Itoa(status) + " by rule " + rule +
		" in " + phase + " (matched: " + strings.Join(ids, ",") + ")")
	headers := [][2]string{
		{"content-type", "application/json"},
		{"x-waf-rule", rule},
		{"x-waf-matched", strings.Join(ids, ",")},
	}
	if err := sendLocalReply(uint32(status), details, headers, body); err != nil {
		proxywasm.LogError(filterName + ": cannot send the local reply: " + err.Error())
	}
	return types.ActionPause
}

// address reads the source or destination address property ("ip:port").
func address(side string) (string, int) {
	raw, err := proxywasm.GetProperty([]string{side, "address"})
	if err != nil {
		return "", 0
	}
	host, port, err := net.SplitHostPort(string(raw))
	if err != nil {
		return string(raw), 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}
