// authorize: a proxy-wasm HTTP filter written against @solo-io/proxy-runtime
// 0.1.8 (AssemblyScript 0.14.13). Build with scripts/build-assemblyscript.sh.
//
// Root id: "authorize". Plugin configuration ("header" required, "tokens"
// optional):
//   {"header": "x-token", "tokens": ["t1", "t2"]}
//
// On request headers the filter reads the configured header. The request is
// let through (log "authorize: allowed") when the value is not empty and, if
// "tokens" is given, equals one of them ("tokens": [] lets nothing through).
// Otherwise (log "authorize: denied") the client gets a local reply 403 with
// body "forbidden\n" and header "x-denied-by: authorize", and the request
// never goes upstream. An invalid configuration makes on_configure fail.
//
// The same filter exists in Go and Rust next to this folder.

// The exports the host calls (proxy_on_*, malloc, proxy_abi_version_0_2_0).
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues,
  log, LogLevelValues, send_local_response, HeaderPair, GrpcStatusValues,
} from "@solo-io/proxy-runtime";
import { get_header_map_value, HeaderMapTypeValues } from "@solo-io/proxy-runtime/runtime";
import { JsonReader, KIND_OBJECT, KIND_ARRAY, KIND_STRING, bytesEqual, bytesOf } from "./json";

const ROOT_ID = "authorize";

class Config {
  header: string = "";
  // hasTokens false: any non-empty value passes.
  hasTokens: bool = false;
  tokens: Uint8Array[] = [];
  error: string = "";
}

function configError(config: Config, message: string): Config {
  config.error = message;
  return config;
}

// Reads the configuration: "header" must be a non-empty string, "tokens"
// (optional) an array of strings; other keys are refused. `error` is set when
// it is invalid.
function parseConfig(text: string): Config {
  const config = new Config();
  const reader = new JsonReader(bytesOf(text));
  const doc = reader.parse();
  if (doc === null) return configError(config, reader.error);
  if (doc.kind != KIND_OBJECT) return configError(config, "the configuration must be a JSON object");
  let seenHeader = false;
  for (let i = 0; i < doc.members.length; i++) {
    const m = doc.members[i];
    const key = String.UTF8.decode(m.key.buffer);
    const value = m.value;
    if (key == "header") {
      if (seenHeader) return configError(config, "duplicate key \"header\"");
      seenHeader = true;
      if (value.kind != KIND_STRING || value.str.length == 0) {
        return configError(config, "\"header\" must be a non-empty string");
      }
      config.header = String.UTF8.decode(value.str.buffer);
    } else if (key == "tokens") {
      if (config.hasTokens) return configError(config, "duplicate key \"tokens\"");
      config.hasTokens = true;
      if (value.kind != KIND_ARRAY) return configError(config, "\"tokens\" must be an array of strings");
      for (let j = 0; j < value.items.length; j++) {
        const item = value.items[j];
        if (item.kind != KIND_STRING) return configError(config, "\"tokens\": every item must be a string");
        config.tokens.push(item.str);
      }
    } else {
      return configError(config, "unknown key \"" + key + "\" (expected \"header\" or \"tokens\")");
    }
  }
  if (!seenHeader) return configError(config, "\"header\" is required");
  return config;
}

function allowed(config: Config, value: Uint8Array): bool {
  if (value.length == 0) return false;
  if (!config.hasTokens) return true;
  for (let i = 0; i < config.tokens.length; i++) {
    if (bytesEqual(config.tokens[i], value)) return true;
  }
  return false;
}

class AuthorizeRoot extends RootContext {
  config: Config = new Config();

  createContext(context_id: u32): Context {
    return new Authorize(context_id, this);
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

class Authorize extends Context {
  root: AuthorizeRoot;

  constructor(context_id: u32, root: AuthorizeRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // The raw bytes (a missing header reads as empty).
    const value = Uint8Array.wrap(get_header_map_value(HeaderMapTypeValues.RequestHeaders,
      String.UTF8.encode(this.root.config.header)));
    if (allowed(this.root.config, value)) {
      log(LogLevelValues.info, ROOT_ID + ": allowed");
      return FilterHeadersStatusValues.Continue;
    }
    log(LogLevelValues.info, ROOT_ID + ": denied");
    const extra: HeaderPair[] = [
      new HeaderPair(String.UTF8.encode("x-denied-by"), String.UTF8.encode("authorize")),
    ];
    const result = send_local_response(403, "", String.UTF8.encode("forbidden\n"), extra,
      GrpcStatusValues.InvalidCode);
    if (result != 0) {
      log(LogLevelValues.error, ROOT_ID + ": cannot send the local reply: status " + result.toString());
    }
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRootContext((context_id: u32): RootContext => new AuthorizeRoot(context_id), ROOT_ID);
