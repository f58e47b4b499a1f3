//! wasmkit sample proxy-wasm filter: `json_rewrite`.
//!
//! Plugin configuration (JSON, both keys optional):
//!
//! ```json
//! {"set": {"field": "value"}, "remove": ["field"]}
//! ```
//!
//! For a response whose `content-type` contains `application/json` (compared
//! case-insensitively) the filter drops `content-length`, buffers the whole
//! body (its body callbacks return Pause until the end of the stream) and, if
//! the body is one JSON object, rewrites its top level: members named in
//! `remove` are dropped, members named in `set` get the configured string
//! value (in place when present, appended in the configuration's order when
//! not; removal happens first, so a key in both ends up appended). Output is
//! compact: existing keys are copied as written, other values are copied with
//! the whitespace outside strings removed, new strings are written with the
//! escapes of `json::write_string`. It then logs
//! `json_rewrite: rewrote N bytes` (N: the size of the body it read). Any
//! other body is passed on unchanged with `json_rewrite: not json`.
//!
//! The same filter, byte for byte in its output, exists in AssemblyScript and
//! Go next to this crate.

mod json;

use log::{error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

const NAME: &str = "json_rewrite";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Config {
    /// (key, value), decoded, in configuration order.
    pub set: Vec<(Vec<u8>, Vec<u8>)>,
    pub remove: Vec<Vec<u8>>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(JsonRewriteRoot {
            config: Rc::new(Config::default()),
        })
    });
}}

struct JsonRewriteRoot {
    config: Rc<Config>,
}

impl Context for JsonRewriteRoot {}

impl RootContext for JsonRewriteRoot {
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
        Some(Box::new(JsonRewrite {
            config: Rc::clone(&self.config),
            active: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct JsonRewrite {
    config: Rc<Config>,
    /// The response is JSON: buffer and rewrite its body.
    active: bool,
}

impl Context for JsonRewrite {}

impl HttpContext for JsonRewrite {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(content_type) = self.get_http_response_header_bytes("content-type") {
            if contains_ignore_case(&content_type, b"application/json") {
                self.active = true;
                self.set_http_response_header("content-length", None);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.active {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause; // keep buffering until the whole body is here
        }
        let body = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        match rewrite(&body, &self.config) {
            Some(out) => {
                self.set_http_response_body(0, body_size, &out);
                info!("{}: rewrote {} bytes", NAME, body.len());
            }
            None => info!("{}: not json", NAME),
        }
        Action::Continue
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The rewritten body, or `None` when `body` is not one JSON object.
pub fn rewrite(body: &[u8], config: &Config) -> Option<Vec<u8>> {
    let members = match json::parse(body) {
        Ok(json::Value {
            kind: json::Kind::Object(members),
            ..
        }) => members,
        _ => return None,
    };
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut set_done = vec![false; config.set.len()];
    out.push(b'{');
    let mut first = true;
    for m in &members {
        if config.remove.iter().any(|k| *k == m.key) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&body[m.key_start..m.key_end]);
        out.push(b':');
        match config.set.iter().position(|(k, _)| *k == m.key) {
            Some(i) => {
                set_done[i] = true;
                json::write_string(&config.set[i].1, &mut out);
            }
            None => json::compact(&body[m.value.start..m.value.end], &mut out),
        }
    }
    for (i, (key, value)) in config.set.iter().enumerate() {
        if set_done[i] {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        json::write_string(key, &mut out);
        out.push(b':');
        json::write_string(value, &mut out);
    }
    out.push(b'}');
    Some(out)
}

/// Reads the configuration; an empty (all-whitespace) one means `{}`.
pub fn parse_config(raw: &[u8]) -> Result<Config, String> {
    let mut config = Config::default();
    if raw.iter().all(|&c| c == b' ' || c == b'\t' || c == b'\n' || c == b'\r') {
        return Ok(config);
    }
    let members = match json::parse(raw)?.kind {
        json::Kind::Object(members) => members,
        _ => return Err("the configuration must be a JSON object".to_string()),
    };
    let (mut seen_set, mut seen_remove) = (false, false);
    for m in members {
        match (&m.key[..], m.value.kind) {
            (b"set", _) if seen_set => return Err("duplicate key \"set\"".to_string()),
            (b"remove", _) if seen_remove => return Err("duplicate key \"remove\"".to_string()),
            (b"set", json::Kind::Object(fields)) => {
                seen_set = true;
                for f in fields {
                    let value = match f.value.kind {
                        json::Kind::Str(v) => v,
                        _ => return Err("\"set\": every value must be a string".to_string()),
                    };
                    if config.set.iter().any(|(k, _)| *k == f.key) {
                        return Err("\"set\": duplicate field".to_string());
                    }
                    config.set.push((f.key, value));
                }
            }
            (b"remove", json::Kind::Array(items)) => {
                seen_remove = true;
                for item in items {
                    match item.kind {
                        json::Kind::Str(k) => config.remove.push(k),
                        _ => return Err("\"remove\": every item must be a string".to_string()),
                    }
                }
            }
            (b"set", _) => return Err("\"set\" must be an object".to_string()),
            (b"remove", _) => return Err("\"remove\" must be an array".to_string()),
            _ => {
                return Err(format!(
                    "unknown key \"{}\" (expected \"set\" or \"remove\")",
                    String::from_utf8_lossy(&m.key)
                ))
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        parse_config(text.as_bytes()).unwrap()
    }

    #[test]
    fn rewrites_flat_objects() {
        let c = cfg(r#"{"set": {"b": "x", "new": "n\"1"}, "remove": ["gone"]}"#);
        let out = rewrite(
            br#"{ "a" : 1, "gone": true, "b": null, "c": [1, {"d": "e f"}] }"#,
            &c,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":1,"b":"x","c":[1,{"d":"e f"}],"new":"n\"1"}"#
        );
    }

    #[test]
    fn remove_then_set() {
        let c = cfg(r#"{"set": {"a": "2"}, "remove": ["a"]}"#);
        assert_eq!(rewrite(br#"{"a":"1","b":2}"#, &c).unwrap(), br#"{"b":2,"a":"2"}"#);
        assert_eq!(rewrite(b"{}", &Config::default()).unwrap(), b"{}");
    }

    #[test]
    fn not_objects() {
        for body in [&b""[..], b"[1]", b"\"s\"", b"{\"a\":}", b"hello"] {
            assert!(rewrite(body, &Config::default()).is_none());
        }
    }

    #[test]
    fn config_errors() {
        assert_eq!(parse_config(b" ").unwrap(), Config::default());
        for bad in [
            "{",
            "[]",
            r#"{"set": []}"#,
            r#"{"set": {"a": 1}}"#,
            r#"{"remove": [1]}"#,
            r#"{"remove": "a"}"#,
            r#"{"other": 1}"#,
            r#"{"set": {}, "set": {}}"#,
            r#"{"set": {"a": "1", "a": "2"}}"#,
        ] {
            assert!(parse_config(bad.as_bytes()).is_err(), "accepted {}", bad);
        }
    }
}
