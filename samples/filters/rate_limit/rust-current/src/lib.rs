//! wasmkit sample proxy-wasm filter: `rate_limit`.
//!
//! A token bucket per value of one request header (`x-api-key` unless
//! configured; requests without the header share one bucket). Plugin
//! configuration (JSON, every key optional):
//!
//! ```json
//! {"requests_per_second": 1.0, "burst": 5, "key_header": "x-api-key",
//!  "status": 429, "max_keys": 10000}
//! ```
//!
//! Each bucket holds up to `burst` tokens and refills at
//! `requests_per_second`. A request that finds its bucket empty is answered by
//! the filter with `status`, `retry-after` (whole seconds) and
//! `x-ratelimit-limit`; the others go on, and their responses get
//! `x-ratelimit-limit` and `x-ratelimit-remaining`. The buckets live in the
//! root context, so the streams of one VM (one Envoy worker) share them; time
//! is the host's clock. At most `max_keys` buckets are kept: when a new key
//! comes and the table is full, the buckets that have refilled completely are
//! dropped (they hold nothing worth keeping), and if none has, all are.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Refill rate of each bucket (tokens per second).
    pub requests_per_second: f64,
    /// Size of each bucket (tokens): the requests allowed in a burst.
    pub burst: u32,
    /// The request header whose value picks the bucket.
    pub key_header: String,
    /// The status of the filter's answer to a limited request.
    pub status: u32,
    /// Most buckets kept at once.
    pub max_keys: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            requests_per_second: 1.0,
            burst: 5,
            key_header: "x-api-key".to_owned(),
            status: 429,
            max_keys: 10_000,
        }
    }
}

impl Config {
    /// Parses and checks the plugin configuration; empty means the defaults.
    pub fn parse(raw: &[u8]) -> Result<Config, String> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Config::default());
        }
        let mut config: Config = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
        let rate = config.requests_per_second;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("requests_per_second must be > 0, not {rate}"));
        }
        if config.burst == 0 {
            return Err("burst must be at least 1".to_owned());
        }
        if !(200..=599).contains(&config.status) {
            return Err(format!("status must be 200..599, not {}", config.status));
        }
        if config.key_header.is_empty() || config.max_keys == 0 {
            return Err("key_header and max_keys must not be empty".to_owned());
        }
        config.key_header.make_ascii_lowercase();
        Ok(config)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Duration,
}

impl Bucket {
    /// Its tokens at `now` (a clock going backwards refills nothing).
    fn level(&self, now: Duration, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_sub(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

/// The buckets of one plugin.
pub struct Limiter {
    config: Config,
    buckets: HashMap<String, Bucket>,
}

impl Limiter {
    pub fn new(config: Config) -> Self {
        Limiter {
            config,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `key`'s bucket at `now`: the whole tokens left, or
    /// the seconds until one is back.
    pub fn take(&mut self, key: &str, now: Duration) -> Result<u32, u64> {
        let rate = self.config.requests_per_second;
        let burst = f64::from(self.config.burst);
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.config.max_keys {
            self.buckets.retain(|_, b| b.level(now, rate, burst) < burst);
            if self.buckets.len() >= self.config.max_keys {
                self.buckets.clear();
            }
        }
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens = bucket.level(now, rate, burst);
        bucket.updated = bucket.updated.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(bucket.tokens.floor() as u32)
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(RateLimitRoot {
            limiter: Rc::new(RefCell::new(Limiter::new(Config::default()))),
        })
    });
}}

struct RateLimitRoot {
    limiter: Rc<RefCell<Limiter>>,
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(raw) = self.get_plugin_configuration() else {
            self.limiter = Rc::new(RefCell::new(Limiter::new(Config::default())));
            return true;
        };
        match Config::parse(&raw) {
            Ok(config) => {
                info!(
                    "rate_limit: {} requests/s, burst {}, by {}",
                    config.requests_per_second, config.burst, config.key_header
                );
                self.limiter = Rc::new(RefCell::new(Limiter::new(config)));
                true
            }
            Err(message) => {
                error!("rate_limit: invalid configuration: {message}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RateLimitStream {
            limiter: Rc::clone(&self.limiter),
            remaining: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RateLimitStream {
    limiter: Rc<RefCell<Limiter>>,
    /// Tokens left after this request took one (`None`: not counted).
    remaining: Option<u32>,
}

impl Context for RateLimitStream {}

impl HttpContext for RateLimitStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let (header, status, burst) = {
            let limiter = self.limiter.borrow();
            let config = &limiter.config;
            (config.key_header.clone(), config.status, config.burst)
        };
        let key = self.get_http_request_header(&header).unwrap_or_default();
        let taken = self.limiter.borrow_mut().take(&key, now);
        match taken {
            Ok(remaining) => {
                self.remaining = Some(remaining);
                Action::Continue
            }
            Err(wait) => {
                info!("rate_limit: {header}={key:?} limited for {wait} s");
                let (wait, burst) = (wait.to_string(), burst.to_string());
                self.send_http_response(
                    status,
                    vec![("retry-after", &wait), ("x-ratelimit-limit", &burst)],
                    Some(b"rate limited\n"),
                );
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(remaining) = self.remaining else {
            return Action::Continue;
        };
        let burst = self.limiter.borrow().config.burst;
        self.set_http_response_header("x-ratelimit-limit", Some(&burst.to_string()));
        self.set_http_response_header("x-ratelimit-remaining", Some(&remaining.to_string()));
        Action::Continue
    }
}
