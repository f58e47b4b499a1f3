//! wasmkit sample proxy-wasm filter: `authorize`.
//!
//! Plugin configuration (JSON; `header` required, `tokens` optional):
//!
//! ```json
//! {"header": "x-token", "tokens": ["t1", "t2"]}
//! ```
//!
//! On request headers the filter reads the configured header. The request is
//! let through (log `authorize: allowed`) when the value is not empty and,
//! if `tokens` is given, equals one of them (`"tokens": []` lets nothing
//! through). Otherwise (log `authorize: denied`) the client gets a local reply
//! 403 with body `forbidden\n` and header `x-denied-by: authorize`, and the
//! request never goes upstream.
//!
//! The configuration is read with serde_json into a `#[derive(Deserialize)]`
//! struct: unknown and repeated keys are refused by serde.
//!
//! The same filter exists in AssemblyScript and Go next to this crate.

use log::{error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;
use std::rc::Rc;

const NAME: &str = "authorize";

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub header: String,
    /// `None`: any non-empty value passes.
    pub tokens: Option<Vec<String>>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(AuthorizeRoot {
            config: Rc::new(Config::default()),
        })
    });
}}

struct AuthorizeRoot {
    config: Rc<Config>,
}

impl Context for AuthorizeRoot {}

impl RootContext for AuthorizeRoot {
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
        Some(Box::new(Authorize {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Authorize {
    config: Rc<Config>,
}

impl Context for Authorize {}

impl HttpContext for Authorize {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let value = self
            .get_http_request_header_bytes(&self.config.header)
            .unwrap_or_default();
        if allowed(&self.config, &value) {
            info!("{}: allowed", NAME);
            return Action::Continue;
        }
        info!("{}: denied", NAME);
        self.send_http_response(
            403,
            vec![("x-denied-by", "authorize")],
            Some(b"forbidden\n"),
        );
        Action::Pause
    }
}

pub fn allowed(config: &Config, value: &[u8]) -> bool {
    if value.is_empty() {
        return false;
    }
    match &config.tokens {
        None => true,
        Some(tokens) => tokens.iter().any(|t| t.as_bytes() == value),
    }
}

/// Reads the configuration; `header` must be a non-empty string, `tokens`
/// (optional) an array of strings; other keys are refused.
pub fn parse_config(raw: &[u8]) -> Result<Config, String> {
    // serde would also read a struct from a JSON array.
    if raw.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the configuration must be a JSON object".to_string());
    }
    let config: Config = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    if config.header.is_empty() {
        return Err("\"header\" must be a non-empty string".to_string());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config() {
        let c = parse_config(br#"{"header": "x-token", "tokens": ["t1", "t2"]}"#).unwrap();
        assert_eq!(c.header, "x-token");
        assert_eq!(c.tokens, Some(vec!["t1".to_string(), "t2".to_string()]));
        assert!(allowed(&c, b"t2"));
        assert!(!allowed(&c, b"t3"));
        assert!(!allowed(&c, b""));
        let any = parse_config(br#"{"header": "x-token"}"#).unwrap();
        assert!(allowed(&any, b"whatever"));
        assert!(!allowed(&any, b""));
        let none = parse_config(br#"{"header": "x", "tokens": []}"#).unwrap();
        assert!(!allowed(&none, b"t1"));
    }

    #[test]
    fn config_errors() {
        for bad in [
            "",
            "[]",
            "{}",
            "{",
            r#"{"header": ""}"#,
            r#"{"header": 1}"#,
            r#"{"header": "x", "tokens": "t1"}"#,
            r#"{"header": "x", "tokens": [1]}"#,
            r#"{"header": "x", "other": 1}"#,
            r#"{"header": "x", "header": "y"}"#,
        ] {
            assert!(parse_config(bad.as_bytes()).is_err(), "accepted {}", bad);
        }
    }
}
