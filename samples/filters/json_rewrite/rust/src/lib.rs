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
//! the whitespace outside strings removed, new strings are written by
//! serde_json (`"` and `\` escaped, control characters as `\n`-style or
//! `\u00xx` escapes). It then logs `json_rewrite: rewrote N bytes` (N: the
//! size of the body it read). Any other body (including one that is not
//! UTF-8, which JSON must be) is passed on unchanged with
//! `json_rewrite: not json`.
//!
//! JSON is read and written with `serde_json`: the configuration through
//! serde's derive, the body as the list of its top-level members, whose keys
//! and values stay `RawValue`s (the text as written, borrowed from the body),
//! so that repeated keys, key spellings and number text survive the rewrite.
//!
//! The same filter, byte for byte in its output, exists in AssemblyScript and
//! Go next to this crate.

use log::{error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;
use std::rc::Rc;

const NAME: &str = "json_rewrite";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Config {
    /// (key, value) in configuration order.
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
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

/// The members of one JSON object in document order, each key and value as
/// the text written in the input (`"k\u0041"` stays `"k\u0041"`, `1.5e3`
/// stays `1.5e3`); repeated keys are all kept.
struct Members<'a>(Vec<(&'a RawValue, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// The rewritten body, or `None` when `body` is not one JSON object.
pub fn rewrite(body: &[u8], config: &Config) -> Option<Vec<u8>> {
    let Members(members) = serde_json::from_slice(body).ok()?;
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut set_done = vec![false; config.set.len()];
    out.push(b'{');
    for (raw_key, raw_value) in members {
        // A key that is no Unicode string (a lone surrogate escape) matches
        // no configured name.
        let key: Option<String> = serde_json::from_str(raw_key.get()).ok();
        let key = key.as_deref();
        if config.remove.iter().any(|k| Some(k.as_str()) == key) {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(raw_key.get().as_bytes());
        out.push(b':');
        match config.set.iter().position(|(k, _)| Some(k.as_str()) == key) {
            Some(i) => {
                set_done[i] = true;
                serde_json::to_writer(&mut out, &config.set[i].1).ok()?;
            }
            None => compact(raw_value.get().as_bytes(), &mut out),
        }
    }
    for (i, (key, value)) in config.set.iter().enumerate() {
        if set_done[i] {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key).ok()?;
        out.push(b':');
        serde_json::to_writer(&mut out, value).ok()?;
    }
    out.push(b'}');
    Some(out)
}

/// Appends `raw`, the text of one valid JSON value (serde_json checked it),
/// without the whitespace outside its strings.
fn compact(raw: &[u8], out: &mut Vec<u8>) {
    let (mut in_string, mut escaped) = (false, false);
    for &c in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
        } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        out.push(c);
    }
}

/// `"set"`: an object of string values, kept in order; a repeated name is an
/// error (serde_json's maps would keep the last one silently).
struct Fields(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields: Vec<(String, String)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    if fields.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate field \"{}\"", key)));
                    }
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    set: Option<Fields>,
    #[serde(default)]
    remove: Vec<String>,
}

/// Reads the configuration; an empty (all-whitespace) one means `{}`.
pub fn parse_config(raw: &[u8]) -> Result<Config, String> {
    match raw.iter().find(|c| !c.is_ascii_whitespace()) {
        None => return Ok(Config::default()),
        // serde would also read a struct from a JSON array.
        Some(b'{') => {}
        Some(_) => return Err("the configuration must be a JSON object".to_string()),
    }
    let config: RawConfig = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    Ok(Config {
        set: config.set.map(|f| f.0).unwrap_or_default(),
        remove: config.remove,
    })
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
        for body in [&b""[..], b"[1]", b"\"s\"", b"{\"a\":}", b"hello", b"{\"a\":\"\xff\"}"] {
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
