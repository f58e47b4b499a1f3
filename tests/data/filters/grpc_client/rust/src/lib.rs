//! wasmkit test filter: asks a gRPC service about every request.
//!
//! On request headers it makes a unary call `pkg.Echo/Say` (proxy-wasm
//! `dispatch_grpc_call`) to the upstream named by the plugin configuration
//! (cluster `grpc` when the configuration is empty) and pauses the request.
//! The request message is a protobuf with one string field (1): the value of
//! the `x-say` header, or the path. Initial metadata: `x-request-id` (from the
//! request, `-` without one) and `x-caller: grpc_client`. Timeout: 500 ms.
//!
//! * The answer (status OK): its message's string field 1 (or the whole
//!   message as text when it is not such a protobuf) goes upstream as request
//!   header `x-grpc-said`, and the request resumes.
//! * A non-OK status (an error, a timeout): a 403 local reply whose body has
//!   the status code and message (`get_grpc_status`), header `x-grpc-status`.
//! * The call cannot be made (the SDK returns `ParseFailure` or
//!   `InternalFailure`): a 503 local reply, header `x-grpc-error`. Any other
//!   status makes proxy-wasm 0.2.2 panic inside `dispatch_grpc_call`.
//!
//! Every step is logged with the prefix `grpc: `, with the virtual time the
//! call took.

use log::{info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::time::{Duration, SystemTime};

const SERVICE: &str = "pkg.Echo";
const METHOD: &str = "Say";
const TIMEOUT: Duration = Duration::from_millis(500);

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { upstream: String::from("grpc") })
    });
}}

struct Root {
    upstream: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        if let Some(config) = self.get_plugin_configuration() {
            if !config.is_empty() {
                match String::from_utf8(config) {
                    Ok(name) => self.upstream = name,
                    Err(_) => {
                        warn!("grpc: the configuration is not UTF-8");
                        return false;
                    }
                }
            }
        }
        info!("grpc: upstream {:?}", self.upstream);
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Ask {
            context_id,
            upstream: self.upstream.clone(),
            token: None,
            sent_at: SystemTime::UNIX_EPOCH,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Ask {
    context_id: u32,
    upstream: String,
    token: Option<u32>,
    sent_at: SystemTime,
}

impl Ask {
    fn elapsed_ms(&self) -> u128 {
        self.get_current_time()
            .duration_since(self.sent_at)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    }
}

/// A protobuf message with `value` as its field 1 (length-delimited).
fn encode_field1(value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a];
    let mut len = value.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(value);
    out
}

/// Field 1 of a protobuf that is exactly one length-delimited field 1.
fn decode_field1(data: &[u8]) -> Option<&[u8]> {
    if data.first() != Some(&0x0a) {
        return None;
    }
    let mut len: usize = 0;
    let mut pos = 1;
    let mut shift = 0;
    loop {
        let byte = *data.get(pos)?;
        pos += 1;
        len |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    if data.len() - pos != len {
        return None;
    }
    Some(&data[pos..])
}

impl Context for Ask {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let ms = self.elapsed_ms();
        if self.token != Some(token) {
            warn!("grpc: answer for unknown token {}", token);
            return;
        }
        self.token = None;
        if status != 0 {
            let (code, message) = self.get_grpc_status();
            let message = message.unwrap_or_default();
            info!(
                "grpc: call {} failed after {} ms: status {} (get_grpc_status: {} {:?})",
                token, ms, status, code, message
            );
            let body = format!("denied: grpc status {}: {}", status, message);
            let status_text = status.to_string();
            self.send_http_response(
                403,
                vec![("x-grpc-status", status_text.as_str())],
                Some(body.as_bytes()),
            );
            return;
        }
        let body = self.get_grpc_call_response_body(0, size).unwrap_or_default();
        let said = match decode_field1(&body) {
            Some(text) => String::from_utf8_lossy(text).into_owned(),
            None => String::from_utf8_lossy(&body).into_owned(),
        };
        info!(
            "grpc: call {} answered after {} ms: {} bytes, said {:?}",
            token,
            ms,
            body.len(),
            said
        );
        self.set_http_request_header("x-grpc-said", Some(&said));
        self.resume_http_request();
    }
}

impl HttpContext for Ask {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let text = self
            .get_http_request_header("x-say")
            .or_else(|| self.get_http_request_header(":path"))
            .unwrap_or_default();
        let request_id = self
            .get_http_request_header("x-request-id")
            .unwrap_or_else(|| String::from("-"));
        let message = encode_field1(text.as_bytes());
        self.sent_at = self.get_current_time();
        match self.dispatch_grpc_call(
            &self.upstream,
            SERVICE,
            METHOD,
            vec![
                ("x-request-id", request_id.as_bytes()),
                ("x-caller", b"grpc_client"),
            ],
            Some(&message),
            TIMEOUT,
        ) {
            Ok(token) => {
                info!(
                    "grpc: context {} sent token {} to {:?}: {:?}",
                    self.context_id, token, self.upstream, text
                );
                self.token = Some(token);
            }
            Err(status) => {
                warn!("grpc: cannot call {:?}: {:?}", self.upstream, status);
                let reason = format!("{:?}", status);
                self.send_http_response(
                    503,
                    vec![("x-grpc-error", reason.as_str())],
                    Some(b"grpc service unavailable"),
                );
            }
        }
        Action::Pause
    }
}
