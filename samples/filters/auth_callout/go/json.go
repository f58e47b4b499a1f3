// A minimal, strict JSON reader over bytes, for the wasmkit sample filters
// (each sample carries its own copy). encoding/json is not used: it does not
// keep object member order, nor where each value sits in the input.
//
// parseJSON reads one JSON document (standard whitespace around it allowed)
// into a jsonValue tree that remembers where every value and object key sits
// in the input, so a caller can copy original text through unchanged.
// Strings are decoded to bytes: escapes are resolved, \uXXXX is written as
// UTF-8 (a surrogate pair becomes one code point; a lone surrogate is written
// as its own three-byte sequence), other bytes are kept as they are (UTF-8 is
// not validated). The same reader, with the same rules and limits, exists in
// the AssemblyScript and Rust versions of each sample.

package main

import (
	"bytes"
	"errors"
	"strconv"
)

// jsonMaxDepth: objects and arrays may nest this deep; deeper input is rejected.
const jsonMaxDepth = 64

type jsonKind int

const (
	jsonObject jsonKind = iota
	jsonArray
	jsonString
	jsonNumber
	jsonBool
	jsonNull
)

// jsonValue is a value and its place in the input: src[start:end] is its text.
type jsonValue struct {
	kind       jsonKind
	start, end int
	str        []byte       // jsonString: the decoded string
	members    []jsonMember // jsonObject
	items      []jsonValue  // jsonArray
}

// jsonMember is an object member: src[keyStart:keyEnd] is the quoted key as written.
type jsonMember struct {
	key              []byte
	keyStart, keyEnd int
	value            jsonValue
}

// parseJSON parses a whole document; on failure it says what is wrong and at
// which byte.
func parseJSON(src []byte) (jsonValue, error) {
	r := &jsonReader{s: src}
	r.ws()
	v, err := r.value(0)
	if err != nil {
		return jsonValue{}, err
	}
	r.ws()
	if r.i != len(src) {
		return jsonValue{}, r.fail("unexpected text after the value")
	}
	return v, nil
}

func isJSONSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// jsonCompact appends raw (the text of one JSON value) without the whitespace
// outside its strings.
func jsonCompact(out, raw []byte) []byte {
	inString, escaped := false, false
	for _, c := range raw {
		switch {
		case inString:
			if escaped {
				escaped = false
			} else if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case isJSONSpace(c):
			continue
		}
		out = append(out, c)
	}
	return out
}

// jsonWriteString appends s as a JSON string: '"' and '\' escaped, control
// characters as \b \f \n \r \t or \u00xx (lower-case hex), every other byte as is.
func jsonWriteString(out, s []byte) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for _, c := range s {
		switch {
		case c == '"':
			out = append(out, '\\', '"')
		case c == '\\':
			out = append(out, '\\', '\\')
		case c == 0x08:
			out = append(out, '\\', 'b')
		case c == 0x0c:
			out = append(out, '\\', 'f')
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c == '\t':
			out = append(out, '\\', 't')
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

func hexValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// appendCodePoint writes cp as UTF-8, surrogates included (utf8.AppendRune
// would write U+FFFD for those).
func appendCodePoint(out []byte, cp int) []byte {
	switch {
	case cp < 0x80:
		return append(out, byte(cp))
	case cp < 0x800:
		return append(out, byte(0xc0|cp>>6), byte(0x80|cp&0x3f))
	case cp < 0x10000:
		return append(out, byte(0xe0|cp>>12), byte(0x80|(cp>>6)&0x3f), byte(0x80|cp&0x3f))
	}
	return append(out, byte(0xf0|cp>>18), byte(0x80|(cp>>12)&0x3f),
		byte(0x80|(cp>>6)&0x3f), byte(0x80|cp&0x3f))
}

type jsonReader struct {
	s []byte
	i int
}

func (r *jsonReader) peek() int {
	if r.i < len(r.s) {
		return int(r.s[r.i])
	}
	return -1
}

func (r *jsonReader) ws() {
	for r.i < len(r.s) && isJSONSpace(r.s[r.i]) {
		r.i++
	}
}

func (r *jsonReader) fail(what string) error {
	return errors.New(what + " at byte " + strconv.Itoa(r.i))
}

func (r *jsonReader) value(depth int) (jsonValue, error) {
	v := jsonValue{start: r.i}
	var err error
	switch c := r.peek(); {
	case c < 0:
		return v, r.fail("unexpected end of input")
	case c == '{':
		v.kind = jsonObject
		v.members, err = r.object(depth + 1)
	case c == '[':
		v.kind = jsonArray
		v.items, err = r.array(depth + 1)
	case c == '"':
		v.kind = jsonString
		v.str, err = r.str()
	case c == 't':
		v.kind = jsonBool
		err = r.literal("true")
	case c == 'f':
		v.kind = jsonBool
		err = r.literal("false")
	case c == 'n':
		v.kind = jsonNull
		err = r.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		v.kind = jsonNumber
		err = r.number()
	default:
		return v, r.fail("unexpected character")
	}
	v.end = r.i
	return v, err
}

func (r *jsonReader) object(depth int) ([]jsonMember, error) {
	if depth > jsonMaxDepth {
		return nil, r.fail("too deeply nested")
	}
	r.i++ // '{'
	members := []jsonMember{}
	r.ws()
	if r.peek() == '}' {
		r.i++
		return members, nil
	}
	for {
		r.ws()
		if r.peek() != '"' {
			return nil, r.fail("expected a string key")
		}
		m := jsonMember{keyStart: r.i}
		var err error
		if m.key, err = r.str(); err != nil {
			return nil, err
		}
		m.keyEnd = r.i
		r.ws()
		if r.peek() != ':' {
			return nil, r.fail("expected ':'")
		}
		r.i++
		r.ws()
		if m.value, err = r.value(depth); err != nil {
			return nil, err
		}
		members = append(members, m)
		r.ws()
		switch r.peek() {
		case ',':
			r.i++
		case '}':
			r.i++
			return members, nil
		default:
			return nil, r.fail("expected ',' or '}'")
		}
	}
}

func (r *jsonReader) array(depth int) ([]jsonValue, error) {
	if depth > jsonMaxDepth {
		return nil, r.fail("too deeply nested")
	}
	r.i++ // '['
	items := []jsonValue{}
	r.ws()
	if r.peek() == ']' {
		r.i++
		return items, nil
	}
	for {
		r.ws()
		v, err := r.value(depth)
		if err != nil {
			return nil, err
		}
		items = append(items, v)
		r.ws()
		switch r.peek() {
		case ',':
			r.i++
		case ']':
			r.i++
			return items, nil
		default:
			return nil, r.fail("expected ',' or ']'")
		}
	}
}

func (r *jsonReader) literal(word string) error {
	if bytes.HasPrefix(r.s[r.i:], []byte(word)) {
		r.i += len(word)
		return nil
	}
	return r.fail("invalid literal")
}

func (r *jsonReader) digits() int {
	from := r.i
	for r.i < len(r.s) && r.s[r.i] >= '0' && r.s[r.i] <= '9' {
		r.i++
	}
	return r.i - from
}

func (r *jsonReader) number() error {
	if r.peek() == '-' {
		r.i++
	}
	switch c := r.peek(); {
	case c == '0':
		r.i++
	case c >= '1' && c <= '9':
		r.digits()
	default:
		return r.fail("invalid number")
	}
	if r.peek() == '.' {
		r.i++
		if r.digits() == 0 {
			return r.fail("invalid number")
		}
	}
	if c := r.peek(); c == 'e' || c == 'E' {
		r.i++
		if c := r.peek(); c == '+' || c == '-' {
			r.i++
		}
		if r.digits() == 0 {
			return r.fail("invalid number")
		}
	}
	return nil
}

// hex4At returns the four hex digits at at, or -1.
func (r *jsonReader) hex4At(at int) int {
	if at+4 > len(r.s) {
		return -1
	}
	v := 0
	for _, c := range r.s[at : at+4] {
		d := hexValue(c)
		if d < 0 {
			return -1
		}
		v = v<<4 | d
	}
	return v
}

func (r *jsonReader) str() ([]byte, error) {
	r.i++ // '"'
	out := []byte{}
	for {
		c := r.peek()
		switch {
		case c < 0:
			return nil, r.fail("unterminated string")
		case c == '"':
			r.i++
			return out, nil
		case c < 0x20:
			return nil, r.fail("control character in string")
		case c != '\\':
			out = append(out, byte(c))
			r.i++
			continue
		}
		r.i++
		e := r.peek()
		if e < 0 {
			return nil, r.fail("unterminated string")
		}
		r.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, byte(e))
		case 'b':
			out = append(out, 0x08)
		case 'f':
			out = append(out, 0x0c)
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			cp := r.hex4At(r.i)
			if cp < 0 {
				return nil, r.fail("invalid \\u escape")
			}
			r.i += 4
			if cp >= 0xd800 && cp < 0xdc00 && r.i+1 < len(r.s) && r.s[r.i] == '\\' && r.s[r.i+1] == 'u' {
				if lo := r.hex4At(r.i + 2); lo >= 0xdc00 && lo < 0xe000 {
					cp = 0x10000 + (cp-0xd800)<<10 + (lo - 0xdc00)
					r.i += 6
				}
			}
			out = appendCodePoint(out, cp)
		default:
			r.i--
			return nil, r.fail("invalid escape")
		}
	}
}
