// json_rewrite: a proxy-wasm HTTP filter written against @solo-io/proxy-runtime
// 0.1.8 (AssemblyScript 0.14.13). Build with scripts/build-assemblyscript.sh.
//
// Root id: "json_rewrite". Plugin configuration (both keys optional; the
// runtime cannot start with an empty configuration: give at least "{}"):
//   {"set": {"field": "value", ...}, "remove": ["field", ...]}
//
// For a response whose content-type contains application/json (compared
// case-insensitively) the filter drops content-length, buffers the whole body
// (its body callbacks return StopIterationAndBuffer until the end of the
// stream) and, if the body is one JSON object, rewrites its top level: members
// named in "remove" are dropped, members named in "set" get the configured
// string value (in place when present, appended in the configuration's order
// when not; removal happens first, so a key in both ends up appended). Output
// is compact: existing keys are copied as written, other values are copied
// with the whitespace outside strings removed, new strings are written with
// the escapes of jsonWriteString. It then logs "json_rewrite: rewrote N bytes"
// (N: the size of the body it read). Any other body is passed on unchanged
// with "json_rewrite: not json".
//
// proxy-runtime 0.1.8 has no way to replace a body: its only binding for
// proxy_set_buffer_bytes is misnamed (imported as "proxy_get_buffer_status",
// which a standard host links with another signature) and has no wrapper.
// This filter declares the standard import itself (below).
//
// The same filter, byte for byte in its output, exists in Go and Rust next to
// this folder.

// The exports the host calls (proxy_on_*, malloc, proxy_abi_version_0_2_0).
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues,
  FilterDataStatusValues, stream_context, log, LogLevelValues,
} from "@solo-io/proxy-runtime";
import {
  get_buffer_bytes, get_header_map_value, BufferTypeValues, HeaderMapTypeValues,
} from "@solo-io/proxy-runtime/runtime";
import {
  JsonReader, Bytes, KIND_OBJECT, KIND_ARRAY, KIND_STRING,
  bytesEqual, bytesOf, jsonCompact, jsonWriteString,
} from "./json";

// proxy_set_buffer_bytes(buffer_type, start, length, data_ptr, data_size):
// replaces `length` bytes at `start` with the data.
// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(buffer_type: i32, start: u32, length: u32, data: usize, size: usize): u32;

const ROOT_ID = "json_rewrite";

class Config {
  setKeys: Uint8Array[] = [];
  setValues: Uint8Array[] = [];
  remove: Uint8Array[] = [];
  error: string = "";
}

function configError(config: Config, message: string): Config {
  config.error = message;
  return config;
}

// Reads the configuration; `error` is set when it is invalid.
function parseConfig(text: string): Config {
  const config = new Config();
  const reader = new JsonReader(bytesOf(text));
  const doc = reader.parse();
  if (doc === null) return configError(config, reader.error);
  if (doc.kind != KIND_OBJECT) return configError(config, "the configuration must be a JSON object");
  let seenSet = false;
  let seenRemove = false;
  for (let i = 0; i < doc.members.length; i++) {
    const m = doc.members[i];
    const key = String.UTF8.decode(m.key.buffer);
    const value = m.value;
    if (key == "set") {
      if (seenSet) return configError(config, "duplicate key \"set\"");
      seenSet = true;
      if (value.kind != KIND_OBJECT) return configError(config, "\"set\" must be an object");
      for (let j = 0; j < value.members.length; j++) {
        const f = value.members[j];
        if (f.value.kind != KIND_STRING) return configError(config, "\"set\": every value must be a string");
        for (let k = 0; k < config.setKeys.length; k++) {
          if (bytesEqual(config.setKeys[k], f.key)) return configError(config, "\"set\": duplicate field");
        }
        config.setKeys.push(f.key);
        config.setValues.push(f.value.str);
      }
    } else if (key == "remove") {
      if (seenRemove) return configError(config, "duplicate key \"remove\"");
      seenRemove = true;
      if (value.kind != KIND_ARRAY) return configError(config, "\"remove\" must be an array");
      for (let j = 0; j < value.items.length; j++) {
        const item = value.items[j];
        if (item.kind != KIND_STRING) return configError(config, "\"remove\": every item must be a string");
        config.remove.push(item.str);
      }
    } else {
      return configError(config, "unknown key \"" + key + "\" (expected \"set\" or \"remove\")");
    }
  }
  return config;
}

// Whether `hay` contains the lower-case ASCII `needle`, ignoring ASCII case.
function containsIgnoreCase(hay: Uint8Array, needle: string): bool {
  const n = needle.length;
  for (let i = 0; i + n <= hay.length; i++) {
    let k = 0;
    while (k < n) {
      let c = <i32>hay[i + k];
      if (c >= 0x41 && c <= 0x5a) c += 0x20; // A-Z
      if (c != needle.charCodeAt(k)) break;
      k++;
    }
    if (k == n) return true;
  }
  return false;
}

function isRemoved(config: Config, key: Uint8Array): bool {
  for (let i = 0; i < config.remove.length; i++) {
    if (bytesEqual(config.remove[i], key)) return true;
  }
  return false;
}

// The rewritten body, or null when `body` is not one JSON object.
function rewrite(body: Uint8Array, config: Config): ArrayBuffer | null {
  const reader = new JsonReader(body);
  const doc = reader.parse();
  if (doc === null) return null;
  if (doc.kind != KIND_OBJECT) return null;
  const members = doc.members;
  const out = new Bytes(body.length + 16);
  const setDone = new Array<bool>(config.setKeys.length);
  for (let i = 0; i < setDone.length; i++) setDone[i] = false;
  out.push(0x7b); // {
  let first = true;
  for (let i = 0; i < members.length; i++) {
    const m = members[i];
    if (isRemoved(config, m.key)) continue;
    if (!first) out.push(0x2c); // ,
    first = false;
    out.pushRange(body, m.keyStart, m.keyEnd);
    out.push(0x3a); // :
    let replaced = false;
    for (let k = 0; k < config.setKeys.length; k++) {
      if (bytesEqual(config.setKeys[k], m.key)) {
        setDone[k] = true;
        jsonWriteString(out, config.setValues[k]);
        replaced = true;
        break;
      }
    }
    if (!replaced) jsonCompact(out, body, m.value.start, m.value.end);
  }
  for (let k = 0; k < config.setKeys.length; k++) {
    if (setDone[k]) continue;
    if (!first) out.push(0x2c);
    first = false;
    jsonWriteString(out, config.setKeys[k]);
    out.push(0x3a);
    jsonWriteString(out, config.setValues[k]);
  }
  out.push(0x7d); // }
  return out.toArrayBuffer();
}

class JsonRewriteRoot extends RootContext {
  config: Config = new Config();

  createContext(context_id: u32): Context {
    return new JsonRewrite(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    // The runtime reads the plugin configuration into getConfiguration().
    super.onConfigure(configuration_size);
    const config = parseConfig(this.getConfiguration());
    if (config.error.length) {
      log(LogLevelValues.error, ROOT_ID + ": invalid configuration: " + config.error);
      return false;
    }
    this.config = config;
    return true;
  }
}

class JsonRewrite extends Context {
  root: JsonRewriteRoot;
  // The response is JSON: buffer and rewrite its body.
  active: bool = false;

  constructor(context_id: u32, root: JsonRewriteRoot) {
    super(context_id, root);
    this.root = root;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const contentType = Uint8Array.wrap(
      get_header_map_value(HeaderMapTypeValues.ResponseHeaders, String.UTF8.encode("content-type")));
    if (containsIgnoreCase(contentType, "application/json")) {
      this.active = true;
      stream_context.headers.response.remove("content-length");
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!this.active) return FilterDataStatusValues.Continue;
    // Keep buffering until the whole body is here.
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const size = <u32>body_buffer_length;
    const body = Uint8Array.wrap(get_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, size));
    const out = rewrite(body, this.root.config);
    if (out === null) {
      log(LogLevelValues.info, ROOT_ID + ": not json");
      return FilterDataStatusValues.Continue;
    }
    const result = proxy_set_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, size,
      changetype<usize>(out), out.byteLength);
    if (result != 0) {
      log(LogLevelValues.error, ROOT_ID + ": cannot replace the body: status " + result.toString());
      return FilterDataStatusValues.Continue;
    }
    log(LogLevelValues.info, ROOT_ID + ": rewrote " + body.length.toString() + " bytes");
    return FilterDataStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => new JsonRewriteRoot(context_id), ROOT_ID);
