//! A minimal, strict JSON reader over bytes, for the wasmkit sample filters
//! (each sample carries its own copy: the crates build with Debian's rustc
//! 1.63 and no serde).
//!
//! `parse` reads one JSON document (standard whitespace around it allowed)
//! into a [`Value`] tree that remembers where every value and object key sits
//! in the input, so a caller can copy original text through unchanged.
//! Strings are decoded to bytes: escapes are resolved, `\uXXXX` is written as
//! UTF-8 (a surrogate pair becomes one code point; a lone surrogate is written
//! as its own three-byte sequence), other bytes are kept as they are (UTF-8 is
//! not validated). The same reader, with the same rules and limits, exists in
//! the AssemblyScript and Go versions of each sample.

/// Objects and arrays may nest this deep; deeper input is rejected.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Object(Vec<Member>),
    Array(Vec<Value>),
    Str(Vec<u8>),
    Number,
    Bool(bool),
    Null,
}

/// A value and its place in the input: `src[start..end]` is its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// An object member: `src[key_start..key_end]` is the quoted key as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: Vec<u8>,
    pub key_start: usize,
    pub key_end: usize,
    pub value: Value,
}

/// Parses a whole document; on failure says what is wrong and at which byte.
pub fn parse(src: &[u8]) -> Result<Value, String> {
    let mut p = Reader { s: src, i: 0 };
    p.ws();
    let value = p.value(0)?;
    p.ws();
    if p.i != src.len() {
        return Err(format!("unexpected text after the value at byte {}", p.i));
    }
    Ok(value)
}

/// Appends `raw` (the text of one JSON value) without the whitespace outside
/// its strings.
pub fn compact(raw: &[u8], out: &mut Vec<u8>) {
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
        } else if is_ws(c) {
            continue;
        }
        out.push(c);
    }
}

/// Appends `s` as a JSON string: `"` and `\` escaped, control characters as
/// `\b \f \n \r \t` or `\u00xx` (lower-case hex), every other byte as is.
pub fn write_string(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 15) as usize]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t' || c == b'\n' || c == b'\r'
}

fn hex_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some((c - b'0') as u32),
        b'a'..=b'f' => Some((c - b'a' + 10) as u32),
        b'A'..=b'F' => Some((c - b'A' + 10) as u32),
        _ => None,
    }
}

fn push_code_point(cp: u32, out: &mut Vec<u8>) {
    if cp < 0x80 {
        out.push(cp as u8);
    } else if cp < 0x800 {
        out.push(0xc0 | (cp >> 6) as u8);
        out.push(0x80 | (cp & 0x3f) as u8);
    } else if cp < 0x10000 {
        out.push(0xe0 | (cp >> 12) as u8);
        out.push(0x80 | ((cp >> 6) & 0x3f) as u8);
        out.push(0x80 | (cp & 0x3f) as u8);
    } else {
        out.push(0xf0 | (cp >> 18) as u8);
        out.push(0x80 | ((cp >> 12) & 0x3f) as u8);
        out.push(0x80 | ((cp >> 6) & 0x3f) as u8);
        out.push(0x80 | (cp & 0x3f) as u8);
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if !is_ws(c) {
                break;
            }
            self.i += 1;
        }
    }

    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{} at byte {}", what, self.i))
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        let start = self.i;
        let kind = match self.peek() {
            None => return self.fail("unexpected end of input"),
            Some(b'{') => self.object(depth + 1)?,
            Some(b'[') => self.array(depth + 1)?,
            Some(b'"') => Kind::Str(self.string()?),
            Some(b't') => self.literal(b"true", Kind::Bool(true))?,
            Some(b'f') => self.literal(b"false", Kind::Bool(false))?,
            Some(b'n') => self.literal(b"null", Kind::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => return self.fail("unexpected character"),
        };
        Ok(Value {
            kind,
            start,
            end: self.i,
        })
    }

    fn object(&mut self, depth: usize) -> Result<Kind, String> {
        if depth > MAX_DEPTH {
            return self.fail("too deeply nested");
        }
        self.i += 1; // '{'
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Kind::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.fail("expected a string key");
            }
            let key_start = self.i;
            let key = self.string()?;
            let key_end = self.i;
            self.ws();
            if self.peek() != Some(b':') {
                return self.fail("expected ':'");
            }
            self.i += 1;
            self.ws();
            let value = self.value(depth)?;
            members.push(Member {
                key,
                key_start,
                key_end,
                value,
            });
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Kind::Object(members));
                }
                _ => return self.fail("expected ',' or '}'"),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Kind, String> {
        if depth > MAX_DEPTH {
            return self.fail("too deeply nested");
        }
        self.i += 1; // '['
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Kind::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Kind::Array(items));
                }
                _ => return self.fail("expected ',' or ']'"),
            }
        }
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<Kind, String> {
        if self.s.len() - self.i >= word.len() && &self.s[self.i..self.i + word.len()] == word {
            self.i += word.len();
            Ok(kind)
        } else {
            self.fail("invalid literal")
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - from
    }

    fn number(&mut self) -> Result<Kind, String> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        Ok(Kind::Number)
    }

    /// Four hex digits at `at`, if there are.
    fn hex4_at(&self, at: usize) -> Option<u32> {
        if at + 4 > self.s.len() {
            return None;
        }
        let mut v = 0;
        for &c in &self.s[at..at + 4] {
            v = (v << 4) | hex_value(c)?;
        }
        Some(v)
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        self.i += 1; // '"'
        let mut out = Vec::new();
        loop {
            let c = match self.peek() {
                Some(c) => c,
                None => return self.fail("unterminated string"),
            };
            if c == b'"' {
                self.i += 1;
                return Ok(out);
            }
            if c < 0x20 {
                return self.fail("control character in string");
            }
            if c != b'\\' {
                out.push(c);
                self.i += 1;
                continue;
            }
            self.i += 1;
            let e = match self.peek() {
                Some(e) => e,
                None => return self.fail("unterminated string"),
            };
            self.i += 1;
            match e {
                b'"' | b'\\' | b'/' => out.push(e),
                b'b' => out.push(0x08),
                b'f' => out.push(0x0c),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'u' => {
                    let mut cp = match self.hex4_at(self.i) {
                        Some(v) => v,
                        None => return self.fail("invalid \\u escape"),
                    };
                    self.i += 4;
                    if (0xd800..0xdc00).contains(&cp)
                        && self.s.get(self.i) == Some(&b'\\')
                        && self.s.get(self.i + 1) == Some(&b'u')
                    {
                        if let Some(lo) = self.hex4_at(self.i + 2) {
                            if (0xdc00..0xe000).contains(&lo) {
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                self.i += 6;
                            }
                        }
                    }
                    push_code_point(cp, &mut out);
                }
                _ => {
                    self.i -= 1;
                    return self.fail("invalid escape");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_members_and_spans() {
        let src = br#" {"a": 1, "b\u00e9": [true, null], "c": "x\"y"} "#;
        let v = parse(src).unwrap();
        let members = match v.kind {
            Kind::Object(m) => m,
            _ => panic!("not an object"),
        };
        assert_eq!(members.len(), 3);
        assert_eq!(members[1].key, "b\u{e9}".as_bytes());
        assert_eq!(&src[members[1].key_start..members[1].key_end], br#""b\u00e9""#);
        let arr = &members[1].value;
        assert_eq!(&src[arr.start..arr.end], b"[true, null]");
        let mut out = Vec::new();
        compact(&src[arr.start..arr.end], &mut out);
        assert_eq!(out, b"[true,null]");
        assert_eq!(members[2].value.kind, Kind::Str(b"x\"y".to_vec()));
    }

    #[test]
    fn surrogates() {
        let v = parse(br#""\ud83d\ude00\ud800x""#).unwrap();
        let mut want = "\u{1F600}".as_bytes().to_vec();
        want.extend_from_slice(&[0xed, 0xa0, 0x80, b'x']);
        assert_eq!(v.kind, Kind::Str(want));
    }

    #[test]
    fn writes_strings() {
        let mut out = Vec::new();
        write_string(b"a\"\\\n\x01\xc3\xa9/", &mut out);
        assert_eq!(out, b"\"a\\\"\\\\\\n\\u0001\xc3\xa9/\"");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"[1,]",
            b"01",
            b"1.",
            b"-",
            b"1e",
            b"tru",
            b"\"a\x01\"",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"{} x",
            b"{'a':1}",
        ] {
            assert!(parse(bad).is_err(), "accepted {:?}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
    }
}
