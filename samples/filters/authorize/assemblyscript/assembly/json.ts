// A minimal, strict JSON reader over bytes, for the wasmkit sample filters
// (each AssemblyScript sample carries its own copy), for AssemblyScript 0.14.13.
//
// The Go and Rust versions of the samples use their language's JSON library
// (gjson, serde_json). No JSON package on npm works with the pinned
// AssemblyScript 0.14.13: assemblyscript-json aborts the whole VM on invalid
// input (AssemblyScript 0.14 has no exceptions), accepts other invalid input
// silently and aborts on valid "\f" escapes; json-as needs AssemblyScript
// >= 0.19. samples/filters/README.md has the measurements.
//
// JsonReader.parse reads one JSON document (standard whitespace around it allowed)
// into a JsonValue tree that remembers where every value and object key sits
// in the input, so a caller can copy original text through unchanged.
// Strings are decoded to bytes: escapes are resolved, \uXXXX is written as
// UTF-8 (a surrogate pair becomes one code point; a lone surrogate is written
// as its own three-byte sequence), other bytes are kept as they are (UTF-8 is
// not validated). Errors do not throw (a throw aborts the whole VM): the
// reader's `error` says what is wrong and where.

// Objects and arrays may nest this deep; deeper input is rejected.
export const JSON_MAX_DEPTH: i32 = 64;

export const KIND_OBJECT: i32 = 0;
export const KIND_ARRAY: i32 = 1;
export const KIND_STRING: i32 = 2;
export const KIND_NUMBER: i32 = 3;
export const KIND_BOOL: i32 = 4;
export const KIND_NULL: i32 = 5;

// A value and its place in the input: bytes [start, end) are its text.
export class JsonValue {
  kind: i32 = KIND_NULL;
  start: i32 = 0;
  end: i32 = 0;
  str: Uint8Array = new Uint8Array(0);   // KIND_STRING: the decoded string
  members: JsonMember[] = [];            // KIND_OBJECT
  items: JsonValue[] = [];               // KIND_ARRAY
}

// An object member: bytes [keyStart, keyEnd) are the quoted key as written.
export class JsonMember {
  key: Uint8Array;
  keyStart: i32;
  keyEnd: i32;
  value: JsonValue;

  constructor(key: Uint8Array, keyStart: i32, keyEnd: i32, value: JsonValue) {
    this.key = key;
    this.keyStart = keyStart;
    this.keyEnd = keyEnd;
    this.value = value;
  }
}

// A growable byte buffer.
export class Bytes {
  data: Uint8Array;
  length: i32 = 0;

  constructor(capacity: i32) {
    this.data = new Uint8Array(capacity > 16 ? capacity : 16);
  }

  push(c: i32): void {
    if (this.length == this.data.length) {
      const bigger = new Uint8Array(this.data.length * 2);
      for (let i = 0; i < this.length; i++) bigger[i] = this.data[i];
      this.data = bigger;
    }
    this.data[this.length] = <u8>c;
    this.length++;
  }

  pushAscii(s: string): void {
    for (let i = 0; i < s.length; i++) this.push(s.charCodeAt(i));
  }

  pushRange(src: Uint8Array, start: i32, end: i32): void {
    for (let i = start; i < end; i++) this.push(src[i]);
  }

  toArrayBuffer(): ArrayBuffer {
    return this.data.buffer.slice(0, this.length);
  }
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): bool {
  if (a.length != b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

export function bytesOf(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}

export function isJsonSpace(c: i32): bool {
  return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d;
}

// Appends src[start, end) (the text of one JSON value) without the whitespace
// outside its strings.
export function jsonCompact(out: Bytes, src: Uint8Array, start: i32, end: i32): void {
  let inString = false;
  let escaped = false;
  for (let i = start; i < end; i++) {
    const c = <i32>src[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c == 0x5c) escaped = true;
      else if (c == 0x22) inString = false;
    } else if (c == 0x22) {
      inString = true;
    } else if (isJsonSpace(c)) {
      continue;
    }
    out.push(c);
  }
}

const HEX = "0123456789abcdef";

// Appends s as a JSON string: '"' and '\' escaped, control characters as
// \b \f \n \r \t or \u00xx (lower-case hex), every other byte as is.
export function jsonWriteString(out: Bytes, s: Uint8Array): void {
  out.push(0x22);
  for (let i = 0; i < s.length; i++) {
    const c = <i32>s[i];
    if (c == 0x22) out.pushAscii("\\\"");
    else if (c == 0x5c) out.pushAscii("\\\\");
    else if (c == 0x08) out.pushAscii("\\b");
    else if (c == 0x0c) out.pushAscii("\\f");
    else if (c == 0x0a) out.pushAscii("\\n");
    else if (c == 0x0d) out.pushAscii("\\r");
    else if (c == 0x09) out.pushAscii("\\t");
    else if (c < 0x20) {
      out.pushAscii("\\u00");
      out.push(HEX.charCodeAt(c >> 4));
      out.push(HEX.charCodeAt(c & 15));
    } else out.push(c);
  }
  out.push(0x22);
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;       // 0-9
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;  // a-f
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;  // A-F
  return -1;
}

// Writes cp as UTF-8, surrogates included.
function pushCodePoint(out: Bytes, cp: i32): void {
  if (cp < 0x80) {
    out.push(cp);
  } else if (cp < 0x800) {
    out.push(0xc0 | (cp >> 6));
    out.push(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out.push(0xe0 | (cp >> 12));
    out.push(0x80 | ((cp >> 6) & 0x3f));
    out.push(0x80 | (cp & 0x3f));
  } else {
    out.push(0xf0 | (cp >> 18));
    out.push(0x80 | ((cp >> 12) & 0x3f));
    out.push(0x80 | ((cp >> 6) & 0x3f));
    out.push(0x80 | (cp & 0x3f));
  }
}

export class JsonReader {
  private s: Uint8Array;
  private i: i32 = 0;
  error: string = "";

  constructor(s: Uint8Array) {
    this.s = s;
  }

  // Parses the whole input; on failure returns null and sets `error`.
  parse(): JsonValue | null {
    this.ws();
    const v = this.value(0);
    if (this.error.length) return null;
    this.ws();
    if (this.i != this.s.length) {
      this.fail("unexpected text after the value");
      return null;
    }
    return v;
  }

  private peek(): i32 {
    return this.i < this.s.length ? <i32>this.s[this.i] : -1;
  }

  private ws(): void {
    while (this.i < this.s.length && isJsonSpace(this.s[this.i])) this.i++;
  }

  private fail(what: string): void {
    if (!this.error.length) this.error = what + " at byte " + this.i.toString();
  }

  // Always returns a value; check `error` after.
  private value(depth: i32): JsonValue {
    const v = new JsonValue();
    v.start = this.i;
    const c = this.peek();
    if (c < 0) {
      this.fail("unexpected end of input");
    } else if (c == 0x7b) {          // {
      v.kind = KIND_OBJECT;
      this.object(depth + 1, v);
    } else if (c == 0x5b) {          // [
      v.kind = KIND_ARRAY;
      this.array(depth + 1, v);
    } else if (c == 0x22) {          // "
      v.kind = KIND_STRING;
      v.str = this.str();
    } else if (c == 0x74) {          // t
      v.kind = KIND_BOOL;
      this.literal("true");
    } else if (c == 0x66) {          // f
      v.kind = KIND_BOOL;
      this.literal("false");
    } else if (c == 0x6e) {          // n
      v.kind = KIND_NULL;
      this.literal("null");
    } else if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      v.kind = KIND_NUMBER;
      this.number();
    } else {
      this.fail("unexpected character");
    }
    v.end = this.i;
    return v;
  }

  private object(depth: i32, v: JsonValue): void {
    if (depth > JSON_MAX_DEPTH) {
      this.fail("too deeply nested");
      return;
    }
    this.i++; // {
    this.ws();
    if (this.peek() == 0x7d) {
      this.i++;
      return;
    }
    while (true) {
      this.ws();
      if (this.peek() != 0x22) {
        this.fail("expected a string key");
        return;
      }
      const keyStart = this.i;
      const key = this.str();
      if (this.error.length) return;
      const keyEnd = this.i;
      this.ws();
      if (this.peek() != 0x3a) {
        this.fail("expected ':'");
        return;
      }
      this.i++;
      this.ws();
      const value = this.value(depth);
      if (this.error.length) return;
      v.members.push(new JsonMember(key, keyStart, keyEnd, value));
      this.ws();
      const c = this.peek();
      if (c == 0x2c) {
        this.i++;
      } else if (c == 0x7d) {
        this.i++;
        return;
      } else {
        this.fail("expected ',' or '}'");
        return;
      }
    }
  }

  private array(depth: i32, v: JsonValue): void {
    if (depth > JSON_MAX_DEPTH) {
      this.fail("too deeply nested");
      return;
    }
    this.i++; // [
    this.ws();
    if (this.peek() == 0x5d) {
      this.i++;
      return;
    }
    while (true) {
      this.ws();
      const item = this.value(depth);
      if (this.error.length) return;
      v.items.push(item);
      this.ws();
      const c = this.peek();
      if (c == 0x2c) {
        this.i++;
      } else if (c == 0x5d) {
        this.i++;
        return;
      } else {
        this.fail("expected ',' or ']'");
        return;
      }
    }
  }

  private literal(word: string): void {
    if (this.i + word.length > this.s.length) {
      this.fail("invalid literal");
      return;
    }
    for (let k = 0; k < word.length; k++) {
      if (<i32>this.s[this.i + k] != word.charCodeAt(k)) {
        this.fail("invalid literal");
        return;
      }
    }
    this.i += word.length;
  }

  private digits(): i32 {
    const from = this.i;
    while (this.i < this.s.length && this.s[this.i] >= 0x30 && this.s[this.i] <= 0x39) this.i++;
    return this.i - from;
  }

  private number(): void {
    if (this.peek() == 0x2d) this.i++;
    const c = this.peek();
    if (c == 0x30) {
      this.i++;
    } else if (c >= 0x31 && c <= 0x39) {
      this.digits();
    } else {
      this.fail("invalid number");
      return;
    }
    if (this.peek() == 0x2e) {       // .
      this.i++;
      if (this.digits() == 0) {
        this.fail("invalid number");
        return;
      }
    }
    const e = this.peek();
    if (e == 0x65 || e == 0x45) {    // e E
      this.i++;
      const sign = this.peek();
      if (sign == 0x2b || sign == 0x2d) this.i++;
      if (this.digits() == 0) this.fail("invalid number");
    }
  }

  // The four hex digits at `at`, or -1.
  private hex4At(at: i32): i32 {
    if (at + 4 > this.s.length) return -1;
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const d = hexValue(this.s[at + k]);
      if (d < 0) return -1;
      v = (v << 4) | d;
    }
    return v;
  }

  // A string starting at the opening quote, decoded; check `error` after.
  private str(): Uint8Array {
    this.i++; // "
    const out = new Bytes(16);
    while (true) {
      const c = this.peek();
      if (c < 0) {
        this.fail("unterminated string");
        break;
      }
      if (c == 0x22) {
        this.i++;
        break;
      }
      if (c < 0x20) {
        this.fail("control character in string");
        break;
      }
      if (c != 0x5c) {
        out.push(c);
        this.i++;
        continue;
      }
      this.i++;
      const e = this.peek();
      if (e < 0) {
        this.fail("unterminated string");
        break;
      }
      this.i++;
      if (e == 0x22 || e == 0x5c || e == 0x2f) out.push(e);
      else if (e == 0x62) out.push(0x08);       // b
      else if (e == 0x66) out.push(0x0c);       // f
      else if (e == 0x6e) out.push(0x0a);       // n
      else if (e == 0x72) out.push(0x0d);       // r
      else if (e == 0x74) out.push(0x09);       // t
      else if (e == 0x75) {                     // u
        let cp = this.hex4At(this.i);
        if (cp < 0) {
          this.fail("invalid \\u escape");
          break;
        }
        this.i += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && this.i + 1 < this.s.length &&
            this.s[this.i] == 0x5c && this.s[this.i + 1] == 0x75) {
          const lo = this.hex4At(this.i + 2);
          if (lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            this.i += 6;
          }
        }
        pushCodePoint(out, cp);
      } else {
        this.i--;
        this.fail("invalid escape");
        break;
      }
    }
    return Uint8Array.wrap(out.toArrayBuffer());
  }
}
