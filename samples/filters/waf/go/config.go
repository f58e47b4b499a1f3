package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// defaultDirectives is the rule set used when the configuration names none:
// Coraza's recommended base configuration, the CRS set-up example, every CRS
// rule file, and the engine switched from DetectionOnly to blocking.
var defaultDirectives = []string{
	"Include @coraza.conf-recommended",
	"Include @crs-setup.conf.example",
	"Include @owasp_crs/*.conf",
	"SecRuleEngine On",
}

// pluginConfig is the plugin configuration, a JSON object:
//
//	{
//	  "directives": ["Include @coraza.conf-recommended", "...", "SecRuleEngine On"],
//	  "paranoia_level": 1,
//	  "inbound_anomaly_threshold": 5,
//	  "outbound_anomaly_threshold": 4,
//	  "request_body_limit": 13107200
//	}
//
// Every key is optional; unknown keys are refused.
type pluginConfig struct {
	// Directives are SecLang lines (one directive each, or several joined by
	// newlines). `Include` reads from the embedded CRS: @coraza.conf-recommended,
	// @crs-setup.conf.example and @owasp_crs/<file>. Default: defaultDirectives.
	Directives []string `json:"directives"`
	// ParanoiaLevel is the CRS blocking paranoia level, 1 to 4 (CRS default 1).
	ParanoiaLevel int `json:"paranoia_level"`
	// InboundAnomalyThreshold is the request anomaly score that blocks (CRS default 5).
	InboundAnomalyThreshold int `json:"inbound_anomaly_threshold"`
	// OutboundAnomalyThreshold is the response anomaly score that blocks (CRS default 4).
	OutboundAnomalyThreshold int `json:"outbound_anomaly_threshold"`
	// RequestBodyLimit is the most request body bytes Coraza takes (larger
	// bodies get SecRequestBodyLimitAction: Reject is a 413). A module has no
	// files, so the whole body stays in memory: this is also the in-memory
	// limit, and it replaces SecRequestBodyLimit and
	// SecRequestBodyInMemoryLimit (coraza.conf-recommended's 128 KiB would
	// make Coraza spill larger bodies to a temporary file, which fails here).
	// Default: 13107200, coraza.conf-recommended's SecRequestBodyLimit.
	RequestBodyLimit int `json:"request_body_limit"`
}

// settings is what parseConfig makes of the configuration.
type settings struct {
	directives       string
	requestBodyLimit int
}

const defaultRequestBodyLimit = 13107200

// parseConfig reads the plugin configuration (empty means all defaults).
func parseConfig(raw []byte) (settings, error) {
	cfg := pluginConfig{}
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return settings{}, fmt.Errorf("the configuration must be a JSON object: %w", err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return settings{}, errors.New("the configuration must be a single JSON object")
		}
	}
	out := settings{requestBodyLimit: defaultRequestBodyLimit}
	if cfg.RequestBodyLimit != 0 {
		if cfg.RequestBodyLimit < 1 {
			return settings{}, errors.New(`"request_body_limit" must be at least 1`)
		}
		out.requestBodyLimit = cfg.RequestBodyLimit
	}
	directives := cfg.Directives
	if directives == nil {
		directives = defaultDirectives
	}
	crs, err := crsSettings(cfg)
	if err != nil {
		return settings{}, err
	}
	if len(crs) == 0 {
		out.directives = strings.Join(directives, "\n")
		return out, nil
	}
	// The CRS reads its settings when REQUEST-901-INITIALIZATION runs and
	// defaults only the ones still unset, so they go before the first rule file.
	for i, d := range directives {
		if strings.Contains(d, "@owasp_crs/") {
			lines := append(append(append([]string{}, directives[:i]...), crs...), directives[i:]...)
			out.directives = strings.Join(lines, "\n")
			return out, nil
		}
	}
	return settings{}, errors.New(`"paranoia_level" and the anomaly thresholds are CRS settings: the directives must include @owasp_crs/ rule files`)
}

// crsSettings turns the CRS keys of the configuration into the SecAction
// rules that crs-setup.conf.example shows commented out (ids 900000, 900110).
func crsSettings(cfg pluginConfig) ([]string, error) {
	var out []string
	if cfg.ParanoiaLevel != 0 {
		if cfg.ParanoiaLevel < 1 || cfg.ParanoiaLevel > 4 {
			return nil, fmt.Errorf(`"paranoia_level" must be 1 to 4, not %d`, cfg.ParanoiaLevel)
		}
		out = append(out, fmt.Sprintf(
			`SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=%d"`,
			cfg.ParanoiaLevel))
	}
	var vars []string
	if cfg.InboundAnomalyThreshold != 0 {
		if cfg.InboundAnomalyThreshold < 1 {
			return nil, errors.New(`"inbound_anomaly_threshold" must be at least 1`)
		}
		vars = append(vars, fmt.Sprintf("setvar:tx.inbound_anomaly_score_threshold=%d", cfg.InboundAnomalyThreshold))
	}
	if cfg.OutboundAnomalyThreshold != 0 {
		if cfg.OutboundAnomalyThreshold < 1 {
			return nil, errors.New(`"outbound_anomaly_threshold" must be at least 1`)
		}
		vars = append(vars, fmt.Sprintf("setvar:tx.outbound_anomaly_score_threshold=%d", cfg.OutboundAnomalyThreshold))
	}
	if len(vars) > 0 {
		out = append(out, `SecAction "id:900110,phase:1,pass,t:none,nolog,`+strings.Join(vars, ",")+`"`)
	}
	return out, nil
}
