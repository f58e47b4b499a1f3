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
// The configuration reader is a small hand-written one for exactly this shape
// rather than encoding/json, so that it keeps the order of the headers and any
// repeated names, and rejects the same inputs as the Rust version does
// (unknown or repeated top-level keys, non-string values, empty header names,
// unpaired surrogates, trailing text).
package main

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
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

// ---------------------------------------------------------------------------
// Configuration reader for {"request": {..}, "response": {..}}.
// ---------------------------------------------------------------------------

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
	p := &parser{s: src}
	cfg := &config{}
	seenReq, seenResp := false, false

	p.ws()
	if err := p.expect('{'); err != nil {
		return nil, err
	}
	p.ws()
	if !p.eat('}') {
		for {
			p.ws()
			key, err := p.str()
			if err != nil {
				return nil, err
			}
			p.ws()
			if err := p.expect(':'); err != nil {
				return nil, err
			}
			p.ws()
			switch {
			case key == "request" && !seenReq:
				seenReq = true
				if cfg.request, err = p.headerMap(key); err != nil {
					return nil, err
				}
			case key == "response" && !seenResp:
				seenResp = true
				if cfg.response, err = p.headerMap(key); err != nil {
					return nil, err
				}
			case key == "request" || key == "response":
				return nil, errors.New("duplicate key " + strconv.Quote(key))
			default:
				return nil, errors.New("unknown key " + strconv.Quote(key) + ` (expected "request" or "response")`)
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			if err := p.expect('}'); err != nil {
				return nil, err
			}
			break
		}
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, errors.New("trailing characters at byte " + strconv.Itoa(p.i))
	}
	return cfg, nil
}

type parser struct {
	s []byte
	i int
}

// peek returns the next byte, or -1 at the end of the input.
func (p *parser) peek() int {
	if p.i < len(p.s) {
		return int(p.s[p.i])
	}
	return -1
}

func (p *parser) ws() {
	for {
		switch p.peek() {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) eat(c byte) bool {
	if p.peek() == int(c) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(c byte) error {
	if p.eat(c) {
		return nil
	}
	at := strconv.Itoa(p.i)
	if p.i >= len(p.s) {
		return errors.New("expected '" + string(rune(c)) + "' at byte " + at + ", found end of input")
	}
	r, _ := utf8.DecodeRune(p.s[p.i:])
	return errors.New("expected '" + string(rune(c)) + "' at byte " + at + ", found " + strconv.QuoteRune(r))
}

// headerMap reads {"name": "value", ...} into an ordered list.
func (p *parser) headerMap(what string) ([]header, error) {
	if p.peek() != '{' {
		return nil, errors.New(strconv.Quote(what) + " must be an object of string values")
	}
	p.i++
	out := []header{}
	p.ws()
	if p.eat('}') {
		return out, nil
	}
	for {
		p.ws()
		name, err := p.str()
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, errors.New("empty header name in " + strconv.Quote(what))
		}
		p.ws()
		if err := p.expect(':'); err != nil {
			return nil, err
		}
		p.ws()
		if p.peek() != '"' {
			return nil, errors.New("header " + strconv.Quote(name) + " in " + strconv.Quote(what) + ": value must be a string")
		}
		value, err := p.str()
		if err != nil {
			return nil, err
		}
		out = append(out, header{name, value})
		p.ws()
		if p.eat(',') {
			continue
		}
		if err := p.expect('}'); err != nil {
			return nil, err
		}
		return out, nil
	}
}

func (p *parser) hex4() (rune, error) {
	if p.i+4 > len(p.s) {
		return 0, errors.New("truncated \\u escape")
	}
	v, err := strconv.ParseUint(string(p.s[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, errors.New("bad \\u escape at byte " + strconv.Itoa(p.i))
	}
	p.i += 4
	return rune(v), nil
}

// str reads a JSON string with its escapes.
func (p *parser) str() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	var out []byte
	for {
		if p.i >= len(p.s) {
			return "", errors.New("unterminated string")
		}
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			return string(out), nil
		case c < 0x20:
			return "", errors.New("control character in string at byte " + strconv.Itoa(p.i-1))
		case c != '\\':
			out = append(out, c)
			continue
		}
		if p.i >= len(p.s) {
			return "", errors.New("unterminated escape")
		}
		e := p.s[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, err := p.hex4()
			if err != nil {
				return "", err
			}
			switch {
			case utf16.IsSurrogate(r) && r < 0xDC00:
				if !(p.eat('\\') && p.eat('u')) {
					return "", errors.New("unpaired surrogate in \\u escape")
				}
				lo, err := p.hex4()
				if err != nil {
					return "", err
				}
				r = utf16.DecodeRune(r, lo)
				if r == utf8.RuneError {
					return "", errors.New("invalid surrogate pair in \\u escape")
				}
			case utf16.IsSurrogate(r):
				return "", errors.New("invalid \\u escape")
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", errors.New("invalid escape " + strconv.Quote("\\"+string(rune(e))) + " at byte " + strconv.Itoa(p.i-1))
		}
	}
}
