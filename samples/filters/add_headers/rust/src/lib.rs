//! wasmkit sample proxy-wasm filter: `add_headers`.
//!
//! Plugin configuration (JSON, both keys optional, values are flat strings):
//!
//! ```json
//! {"request": {"x-foo": "bar"}, "response": {"x-served-by": "wasmkit"}}
//! ```
//!
//! Every configured request header is added in `on_http_request_headers`,
//! every configured response header in `on_http_response_headers`.
//!
//! The configuration is read with serde_json. Header maps keep their order
//! and repeated names (a `Vec` of pairs, filled by a serde visitor, where a
//! map type would sort them or keep only the last); unknown or repeated
//! top-level keys, non-string values and empty header names are refused.

use log::{error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::rc::Rc;

type Headers = Vec<(String, String)>;

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, deserialize_with = "header_map")]
    pub request: Headers,
    #[serde(default, deserialize_with = "header_map")]
    pub response: Headers,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(AddHeadersRoot {
            config: Rc::new(Config::default()),
        })
    });
}}

struct AddHeadersRoot {
    config: Rc<Config>,
}

impl Context for AddHeadersRoot {}

impl RootContext for AddHeadersRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            // No configuration: a valid filter that adds nothing.
            self.config = Rc::new(Config::default());
            return true;
        }
        let text = match std::str::from_utf8(&raw) {
            Ok(t) => t,
            Err(_) => {
                error!("add_headers: invalid configuration: not UTF-8");
                return false;
            }
        };
        match parse_config(text) {
            Ok(config) => {
                info!(
                    "add_headers: configured {} request and {} response headers",
                    config.request.len(),
                    config.response.len()
                );
                self.config = Rc::new(config);
                true
            }
            Err(e) => {
                error!("add_headers: invalid configuration: {}", e);
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AddHeaders {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AddHeaders {
    config: Rc<Config>,
}

impl Context for AddHeaders {}

impl HttpContext for AddHeaders {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.config.request {
            self.add_http_request_header(name, value);
        }
        info!(
            "add_headers: added {} request headers",
            self.config.request.len()
        );
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.config.response {
            self.add_http_response_header(name, value);
        }
        info!(
            "add_headers: added {} response headers",
            self.config.response.len()
        );
        Action::Continue
    }
}

/// `{"name": "value", ...}` -> (name, value) pairs in the order written.
fn header_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Headers, D::Error> {
    struct HeaderMapVisitor;
    impl<'de> Visitor<'de> for HeaderMapVisitor {
        type Value = Headers;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of string values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
            let mut headers = Vec::new();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                if name.is_empty() {
                    return Err(de::Error::custom("empty header name"));
                }
                headers.push((name, value));
            }
            Ok(headers)
        }
    }
    deserializer.deserialize_map(HeaderMapVisitor)
}

/// Parses the plugin configuration (one JSON object, see the crate docs).
pub fn parse_config(text: &str) -> Result<Config, String> {
    // serde would also read a struct from a JSON array.
    if !text.trim_start().starts_with('{') {
        return Err("the configuration must be a JSON object".to_string());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_full_shape() {
        let c = parse_config(
            r#" { "request": {"x-a": "1", "x-b": "two"},
                  "response": {"x-c": "\u00e9\n\"q\""} } "#,
        )
        .unwrap();
        assert_eq!(c.request, h(&[("x-a", "1"), ("x-b", "two")]));
        assert_eq!(c.response, h(&[("x-c", "\u{e9}\n\"q\"")]));
    }

    #[test]
    fn keys_optional() {
        assert_eq!(parse_config("{}").unwrap(), Config::default());
        let c = parse_config(r#"{"response":{"a":"b"}}"#).unwrap();
        assert!(c.request.is_empty());
        assert_eq!(c.response, h(&[("a", "b")]));
    }

    #[test]
    fn surrogate_pair() {
        let c = parse_config(r#"{"request":{"x":"\ud83d\ude00"}}"#).unwrap();
        assert_eq!(c.request, h(&[("x", "\u{1F600}")]));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"request": 1}"#,
            r#"{"request": {"a": 1}}"#,
            r#"{"request": {"a": "b"},}"#,
            r#"{"other": {}}"#,
            r#"{"request": {}, "request": {}}"#,
            r#"{"request": {"": "x"}}"#,
            r#"{} x"#,
            r#"{"request": {"a": "\q"}}"#,
            r#"{"request": {"a": "\ud83d"}}"#,
        ] {
            assert!(parse_config(bad).is_err(), "accepted {:?}", bad);
        }
    }
}
