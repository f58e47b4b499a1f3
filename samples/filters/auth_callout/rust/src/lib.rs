//! wasmkit sample proxy-wasm filter: `auth_callout`.
//!
//! Plugin configuration (JSON; both keys required):
//!
//! ```json
//! {"cluster": "auth", "path": "/check"}
//! ```
//!
//! On request headers the filter asks the cluster with an HTTP callout
//! (`:method GET`, `:path` from the configuration, `:authority` = the cluster
//! name, plus the request's `authorization` header when it has a non-empty
//! one; timeout 5000 ms) and pauses the request. When the answer's `:status`
//! is 200 it adds `x-auth-checked: yes` to the request and resumes it (log
//! `auth_callout: allowed`); any other answer, a failed call or a timeout gets
//! a local reply 403 with body `denied by auth\n` (log
//! `auth_callout: denied (status S)`, or `auth_callout: denied (no answer)`
//! when the answer has no headers). When the call cannot be dispatched at all
//! (e.g. unknown cluster) the client gets a local reply 503 with body
//! `auth unavailable\n` (warning `auth_callout: cannot call <cluster>`).
//!
//! The configuration is read with serde_json into a `#[derive(Deserialize)]`
//! struct: unknown and repeated keys are refused by serde.
//!
//! The same filter exists in AssemblyScript and Go next to this crate.

use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;
use std::rc::Rc;
use std::time::Duration;

const NAME: &str = "auth_callout";
const TIMEOUT: Duration = Duration::from_millis(5000);

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cluster: String,
    pub path: String,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(AuthCalloutRoot {
            config: Rc::new(Config::default()),
        })
    });
}}

struct AuthCalloutRoot {
    config: Rc<Config>,
}

impl Context for AuthCalloutRoot {}

impl RootContext for AuthCalloutRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match parse_config(&raw) {
            Ok(config) => {
                self.config = Rc::new(config);
                true
            }
            Err(e) => {
                error!("{}: invalid configuration: {}", NAME, e);
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthCallout {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthCallout {
    config: Rc<Config>,
}

impl Context for AuthCallout {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        let status = if num_headers == 0 {
            None
        } else {
            self.get_http_call_response_header_bytes(":status")
        };
        if status.as_deref() == Some(&b"200"[..]) {
            self.add_http_request_header("x-auth-checked", "yes");
            self.resume_http_request();
            info!("{}: allowed", NAME);
            return;
        }
        match status {
            Some(s) => info!("{}: denied (status {})", NAME, String::from_utf8_lossy(&s)),
            None => info!("{}: denied (no answer)", NAME),
        }
        self.send_http_response(403, vec![], Some(b"denied by auth\n"));
    }
}

impl HttpContext for AuthCallout {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let mut headers = vec![
            (":method", "GET"),
            (":path", self.config.path.as_str()),
            (":authority", self.config.cluster.as_str()),
        ];
        // The SDK passes header values as &str: a non-UTF-8 value is not sent.
        let authorization = self
            .get_http_request_header_bytes("authorization")
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_default();
        if !authorization.is_empty() {
            headers.push(("authorization", authorization.as_str()));
        }
        if self
            .dispatch_http_call(&self.config.cluster, headers, None, vec![], TIMEOUT)
            .is_err()
        {
            warn!("{}: cannot call {}", NAME, self.config.cluster);
            self.send_http_response(503, vec![], Some(b"auth unavailable\n"));
        }
        Action::Pause
    }
}

/// Reads the configuration: `cluster` and `path`, both non-empty strings.
pub fn parse_config(raw: &[u8]) -> Result<Config, String> {
    // serde would also read a struct from a JSON array.
    if raw.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the configuration must be a JSON object".to_string());
    }
    let config: Config = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    if config.cluster.is_empty() {
        return Err("\"cluster\" must be a non-empty string".to_string());
    }
    if config.path.is_empty() {
        return Err("\"path\" must be a non-empty string".to_string());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config() {
        let c = parse_config(br#"{"cluster": "auth", "path": "/check"}"#).unwrap();
        assert_eq!((c.cluster.as_str(), c.path.as_str()), ("auth", "/check"));
    }

    #[test]
    fn config_errors() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"cluster": "auth"}"#,
            r#"{"path": "/x"}"#,
            r#"{"cluster": "", "path": "/x"}"#,
            r#"{"cluster": 1, "path": "/x"}"#,
            r#"{"cluster": "a", "path": "/x", "x": 1}"#,
            r#"{"cluster": "a", "cluster": "b", "path": "/x"}"#,
        ] {
            assert!(parse_config(bad.as_bytes()).is_err(), "accepted {}", bad);
        }
    }
}
