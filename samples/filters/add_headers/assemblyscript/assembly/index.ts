// add_headers: a proxy-wasm HTTP filter written against @solo-io/proxy-runtime 0.1.8
// (AssemblyScript 0.14.13). Build with scripts/build-assemblyscript.sh.
//
// Root id: "add_headers". Plugin configuration (both keys optional):
//   {"request": {"name": "value", ...}, "response": {"name": "value", ...}}
// Each request header is added to the request headers, each response header to
// the response headers. An invalid configuration makes on_configure fail.

// The exports the host calls (proxy_on_*, malloc, proxy_abi_version_0_2_0).
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues,
  stream_context, log, LogLevelValues,
} from "@solo-io/proxy-runtime";

const ROOT_ID = "add_headers";

class Header {
  name: string;
  value: string;

  constructor(name: string, value: string) {
    this.name = name;
    this.value = value;
  }
}

const CH_TAB: i32 = 0x09;
const CH_LF: i32 = 0x0a;
const CH_CR: i32 = 0x0d;
const CH_SPACE: i32 = 0x20;
const CH_QUOTE: i32 = 0x22;
const CH_COMMA: i32 = 0x2c;
const CH_COLON: i32 = 0x3a;
const CH_BACKSLASH: i32 = 0x5c;
const CH_LBRACE: i32 = 0x7b;
const CH_RBRACE: i32 = 0x7d;

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;        // 0-9
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;   // A-F
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;   // a-f
  return -1;
}

// A tiny JSON parser for exactly this shape (the Go and Rust versions use
// gjson and serde_json; no JSON package on npm works with AssemblyScript
// 0.14.13, see samples/filters/README.md):
//   {"request": {"k": "v", ...}, "response": {"k": "v", ...}}
// Whitespace is allowed anywhere JSON allows it; an empty configuration means
// "no headers". On failure `error` says what is wrong and where.
class ConfigParser {
  private src: string;
  private pos: i32 = 0;
  error: string = "";
  request: Header[] = [];
  response: Header[] = [];

  constructor(src: string) {
    this.src = src;
  }

  parse(): bool {
    this.skipWhitespace();
    if (this.pos == this.src.length) return true; // empty configuration
    if (!this.expect(CH_LBRACE)) return false;
    this.skipWhitespace();
    if (this.peek() == CH_RBRACE) {
      this.pos++;
    } else {
      while (true) {
        const key = this.parseString();
        if (this.error.length) return false;
        this.skipWhitespace();
        if (!this.expect(CH_COLON)) return false;
        if (key == "request") {
          if (!this.parseHeaders(this.request)) return false;
        } else if (key == "response") {
          if (!this.parseHeaders(this.response)) return false;
        } else {
          return this.fail("unknown key \"" + key + "\" (expected \"request\" or \"response\")");
        }
        const next = this.nextMember();
        if (next < 0) return false;
        if (next == 0) break;
      }
    }
    this.skipWhitespace();
    if (this.pos != this.src.length) return this.fail("unexpected text after the configuration object");
    return true;
  }

  // {"name": "value", ...} appended to `out`.
  private parseHeaders(out: Header[]): bool {
    this.skipWhitespace();
    if (!this.expect(CH_LBRACE)) return false;
    this.skipWhitespace();
    if (this.peek() == CH_RBRACE) {
      this.pos++;
      return true;
    }
    while (true) {
      const name = this.parseString();
      if (this.error.length) return false;
      this.skipWhitespace();
      if (!this.expect(CH_COLON)) return false;
      this.skipWhitespace();
      if (this.peek() != CH_QUOTE) return this.fail("header \"" + name + "\": value must be a string");
      const value = this.parseString();
      if (this.error.length) return false;
      out.push(new Header(name, value));
      const next = this.nextMember();
      if (next <= 0) return next == 0;
    }
  }

  // After an object member: 1 after "," (another member follows), 0 after "}",
  // -1 on error.
  private nextMember(): i32 {
    this.skipWhitespace();
    const c = this.peek();
    this.pos++;
    if (c == CH_COMMA) {
      this.skipWhitespace();
      return 1;
    }
    if (c == CH_RBRACE) return 0;
    this.pos--;
    this.fail("expected ',' or '}'");
    return -1;
  }

  // A JSON string starting at pos; returns "" and sets `error` on failure.
  private parseString(): string {
    if (!this.expect(CH_QUOTE)) return "";
    let result = "";
    let start = this.pos;
    while (true) {
      const c = this.peek();
      if (c < 0) {
        this.fail("unterminated string");
        return "";
      }
      if (c == CH_QUOTE) {
        result += this.src.substring(start, this.pos);
        this.pos++;
        return result;
      }
      if (c < 0x20) {
        this.fail("control character in string");
        return "";
      }
      if (c != CH_BACKSLASH) {
        this.pos++;
        continue;
      }
      result += this.src.substring(start, this.pos);
      this.pos++;
      const e = this.peek();
      this.pos++;
      if (e == CH_QUOTE || e == CH_BACKSLASH || e == 0x2f /* / */) result += String.fromCharCode(e);
      else if (e == 0x62 /* b */) result += "\b";
      else if (e == 0x66 /* f */) result += "\f";
      else if (e == 0x6e /* n */) result += "\n";
      else if (e == 0x72 /* r */) result += "\r";
      else if (e == 0x74 /* t */) result += "\t";
      else if (e == 0x75 /* u */) {
        let code = 0;
        for (let i = 0; i < 4; i++) {
          const d = hexDigit(this.peek());
          if (d < 0) {
            this.fail("bad \\u escape");
            return "";
          }
          code = (code << 4) | d;
          this.pos++;
        }
        result += String.fromCharCode(code); // surrogate pairs arrive as two escapes
      } else {
        this.pos--;
        this.fail("bad escape");
        return "";
      }
      start = this.pos;
    }
  }

  private expect(c: i32): bool {
    if (this.peek() != c) return this.fail("expected '" + String.fromCharCode(c) + "'");
    this.pos++;
    return true;
  }

  private peek(): i32 {
    return this.pos < this.src.length ? this.src.charCodeAt(this.pos) : -1;
  }

  private skipWhitespace(): void {
    while (true) {
      const c = this.peek();
      if (c != CH_SPACE && c != CH_TAB && c != CH_LF && c != CH_CR) return;
      this.pos++;
    }
  }

  private fail(message: string): bool {
    if (!this.error.length) this.error = message + " at offset " + this.pos.toString();
    return false;
  }
}

class AddHeadersRoot extends RootContext {
  requestHeaders: Header[] = [];
  responseHeaders: Header[] = [];

  createContext(context_id: u32): Context {
    return new AddHeaders(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    // The runtime reads the plugin configuration into getConfiguration().
    super.onConfigure(configuration_size);
    const parser = new ConfigParser(this.getConfiguration());
    if (!parser.parse()) {
      log(LogLevelValues.error, ROOT_ID + ": invalid configuration: " + parser.error);
      return false;
    }
    this.requestHeaders = parser.request;
    this.responseHeaders = parser.response;
    return true;
  }
}

class AddHeaders extends Context {
  root: AddHeadersRoot;

  constructor(context_id: u32, root: AddHeadersRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const list = this.root.requestHeaders;
    for (let i = 0; i < list.length; i++) {
      stream_context.headers.request.add(list[i].name, list[i].value);
    }
    log(LogLevelValues.info, ROOT_ID + ": added " + list.length.toString() + " request headers");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const list = this.root.responseHeaders;
    for (let i = 0; i < list.length; i++) {
      stream_context.headers.response.add(list[i].name, list[i].value);
    }
    log(LogLevelValues.info, ROOT_ID + ": added " + list.length.toString() + " response headers");
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => new AddHeadersRoot(context_id), ROOT_ID);
