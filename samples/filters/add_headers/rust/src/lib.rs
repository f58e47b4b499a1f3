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
//! The configuration parser is a deliberately tiny hand-written JSON reader
//! for exactly this shape, so that the crate builds with Debian 12's
//! rustc 1.63 without serde.

use log::{error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

type Headers = Vec<(String, String)>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Config {
    pub request: Headers,
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

// ---------------------------------------------------------------------------
// Minimal JSON reader for `{"request": {..}, "response": {..}}`.
// ---------------------------------------------------------------------------

/// Parses the plugin configuration. Accepts standard JSON whitespace and
/// string escapes (including `\uXXXX` and surrogate pairs). Rejects unknown
/// top-level keys, duplicate top-level keys, non-string header values and
/// trailing garbage.
pub fn parse_config(text: &str) -> Result<Config, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut config = Config::default();
    let (mut seen_req, mut seen_resp) = (false, false);

    p.ws();
    p.expect(b'{')?;
    p.ws();
    if !p.eat(b'}') {
        loop {
            p.ws();
            let key = p.string()?;
            p.ws();
            p.expect(b':')?;
            p.ws();
            match key.as_str() {
                "request" if !seen_req => {
                    seen_req = true;
                    config.request = p.header_map("request")?;
                }
                "response" if !seen_resp => {
                    seen_resp = true;
                    config.response = p.header_map("response")?;
                }
                "request" | "response" => return Err(format!("duplicate key \"{}\"", key)),
                other => {
                    return Err(format!(
                        "unknown key \"{}\" (expected \"request\" or \"response\")",
                        other
                    ))
                }
            }
            p.ws();
            if p.eat(b',') {
                continue;
            }
            p.expect(b'}')?;
            break;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing characters at byte {}", p.i));
    }
    Ok(config)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(match self.peek() {
                Some(got) => format!(
                    "expected '{}' at byte {}, found '{}'",
                    c as char,
                    self.i,
                    got.escape_ascii()
                ),
                None => format!(
                    "expected '{}' at byte {}, found end of input",
                    c as char, self.i
                ),
            })
        }
    }

    /// `{"name": "value", ...}` -> ordered list of (name, value).
    fn header_map(&mut self, what: &str) -> Result<Headers, String> {
        if self.peek() != Some(b'{') {
            return Err(format!("\"{}\" must be an object of string values", what));
        }
        self.i += 1;
        let mut out = Vec::new();
        self.ws();
        if self.eat(b'}') {
            return Ok(out);
        }
        loop {
            self.ws();
            let name = self.string()?;
            if name.is_empty() {
                return Err(format!("empty header name in \"{}\"", what));
            }
            self.ws();
            self.expect(b':')?;
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(format!(
                    "value of header \"{}\" in \"{}\" must be a string",
                    name, what
                ));
            }
            let value = self.string()?;
            out.push((name, value));
            self.ws();
            if self.eat(b',') {
                continue;
            }
            self.expect(b'}')?;
            return Ok(out);
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let end = self.i + 4;
        if end > self.s.len() {
            return Err("truncated \\u escape".to_string());
        }
        let digits = std::str::from_utf8(&self.s[self.i..end]).map_err(|_| "bad \\u escape")?;
        let v = u32::from_str_radix(digits, 16)
            .map_err(|_| format!("bad \\u escape at byte {}", self.i))?;
        self.i = end;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = match self.peek() {
                Some(c) => c,
                None => return Err("unterminated string".to_string()),
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek().ok_or("unterminated escape")?;
                    self.i += 1;
                    let ch: char = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return Err("unpaired surrogate in \\u escape".to_string());
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err("invalid surrogate pair in \\u escape".to_string());
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or("invalid \\u escape")?
                        }
                        other => {
                            return Err(format!(
                                "invalid escape '\\{}' at byte {}",
                                other.escape_ascii(),
                                self.i - 1
                            ))
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0x00..=0x1f => {
                    return Err(format!(
                        "control character in string at byte {}",
                        self.i - 1
                    ))
                }
                _ => out.push(c),
            }
        }
        // Input was &str and escapes produce valid UTF-8, so this cannot fail.
        String::from_utf8(out).map_err(|_| "invalid UTF-8 in string".to_string())
    }
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
