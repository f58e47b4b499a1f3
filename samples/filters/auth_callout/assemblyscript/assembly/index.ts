// auth_callout: a proxy-wasm HTTP filter written against @solo-io/proxy-runtime
// 0.1.8 (AssemblyScript 0.14.13). Build with scripts/build-assemblyscript.sh.
//
// Root id: "auth_callout". Plugin configuration (both keys required):
//   {"cluster": "auth", "path": "/check"}
//
// On request headers the filter asks the cluster with an HTTP callout
// (:method GET, :path from the configuration, :authority = the cluster name,
// plus the request's authorization header when it has a non-empty one;
// timeout 5000 ms) and pauses the request. When the answer's :status is 200 it
// adds "x-auth-checked: yes" to the request and resumes it (log
// "auth_callout: allowed"); any other answer, a failed call or a timeout gets
// a local reply 403 with body "denied by auth\n" (log
// "auth_callout: denied (status S)", or "auth_callout: denied (no answer)"
// when the answer has no headers). When the call cannot be dispatched at all
// (e.g. unknown cluster) the client gets a local reply 503 with body
// "auth unavailable\n" (warning "auth_callout: cannot call <cluster>").
//
// The runtime's RootContext.httpCall sends the call and, when the answer
// arrives, switches to the stream's context and calls a plain function
// (AssemblyScript 0.14 has no closures) with the stream's Context.
//
// The same filter exists in Go and Rust next to this folder.

// The exports the host calls (proxy_on_*, malloc, proxy_abi_version_0_2_0).
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues,
  log, LogLevelValues, send_local_response, HeaderPair, Headers, GrpcStatusValues,
  stream_context, continue_request, WasmResultValues,
} from "@solo-io/proxy-runtime";
import { get_header_map_value, HeaderMapTypeValues } from "@solo-io/proxy-runtime/runtime";
import { JsonReader, KIND_OBJECT, KIND_STRING, bytesOf } from "./json";

const ROOT_ID = "auth_callout";
const TIMEOUT_MS: u32 = 5000;

class Config {
  cluster: string = "";
  path: string = "";
  error: string = "";
}

function configError(config: Config, message: string): Config {
  config.error = message;
  return config;
}

// Reads the configuration: "cluster" and "path", both non-empty strings;
// other keys are refused. `error` is set when it is invalid.
function parseConfig(text: string): Config {
  const config = new Config();
  const reader = new JsonReader(bytesOf(text));
  const doc = reader.parse();
  if (doc === null) return configError(config, reader.error);
  if (doc.kind != KIND_OBJECT) return configError(config, "the configuration must be a JSON object");
  let seenCluster = false;
  let seenPath = false;
  for (let i = 0; i < doc.members.length; i++) {
    const m = doc.members[i];
    const key = String.UTF8.decode(m.key.buffer);
    if (key != "cluster" && key != "path") {
      return configError(config, "unknown key \"" + key + "\" (expected \"cluster\" or \"path\")");
    }
    if ((key == "cluster" && seenCluster) || (key == "path" && seenPath)) {
      return configError(config, "duplicate key \"" + key + "\"");
    }
    const value = m.value;
    if (value.kind != KIND_STRING || value.str.length == 0) {
      return configError(config, "\"" + key + "\" must be a non-empty string");
    }
    const text = String.UTF8.decode(value.str.buffer);
    if (key == "cluster") {
      seenCluster = true;
      config.cluster = text;
    } else {
      seenPath = true;
      config.path = text;
    }
  }
  if (!seenCluster) return configError(config, "\"cluster\" is required");
  if (!seenPath) return configError(config, "\"path\" is required");
  return config;
}

function pair(name: string, value: ArrayBuffer): HeaderPair {
  return new HeaderPair(String.UTF8.encode(name), value);
}

function reply(status: u32, body: string): void {
  const result = send_local_response(status, "", String.UTF8.encode(body), [],
    GrpcStatusValues.InvalidCode);
  if (result != WasmResultValues.Ok) {
    log(LogLevelValues.error, ROOT_ID + ": cannot send the local reply: status " + result.toString());
  }
}

// The answer to the callout, run with the stream's context effective.
function onAuthAnswer(origin_context: Context, headers: u32, body_size: usize, trailers: u32): void {
  let status = "";
  let found = false;
  if (headers > 0) {
    const raw = get_header_map_value(HeaderMapTypeValues.HttpCallResponseHeaders,
      String.UTF8.encode(":status"));
    // The runtime cannot tell a missing header from an empty one.
    found = raw.byteLength > 0;
    status = String.UTF8.decode(raw);
  }
  if (found && status == "200") {
    stream_context.headers.request.add("x-auth-checked", "yes");
    const result = continue_request();
    if (result != WasmResultValues.Ok) {
      log(LogLevelValues.error, ROOT_ID + ": cannot resume the request: status " + result.toString());
    }
    log(LogLevelValues.info, ROOT_ID + ": allowed");
    return;
  }
  if (found) log(LogLevelValues.info, ROOT_ID + ": denied (status " + status + ")");
  else log(LogLevelValues.info, ROOT_ID + ": denied (no answer)");
  reply(403, "denied by auth\n");
}

class AuthCalloutRoot extends RootContext {
  config: Config = new Config();

  createContext(context_id: u32): Context {
    return new AuthCallout(context_id, this);
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

class AuthCallout extends Context {
  root: AuthCalloutRoot;

  constructor(context_id: u32, root: AuthCalloutRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const config = this.root.config;
    const call: Headers = [
      pair(":method", String.UTF8.encode("GET")),
      pair(":path", String.UTF8.encode(config.path)),
      pair(":authority", String.UTF8.encode(config.cluster)),
    ];
    // The raw bytes (a missing header reads as empty).
    const authorization = get_header_map_value(HeaderMapTypeValues.RequestHeaders,
      String.UTF8.encode("authorization"));
    if (authorization.byteLength > 0) call.push(pair("authorization", authorization));
    const result = this.root.httpCall(config.cluster, call, new ArrayBuffer(0), [], TIMEOUT_MS,
      this, onAuthAnswer);
    if (result != WasmResultValues.Ok) {
      log(LogLevelValues.warn, ROOT_ID + ": cannot call " + config.cluster);
      reply(503, "auth unavailable\n");
    }
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRootContext((context_id: u32): RootContext => new AuthCalloutRoot(context_id), ROOT_ID);
