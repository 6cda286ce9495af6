//! What the unit tests of the sync, incident and notes calls share: a scripted [`Transport`]
//! that records every request, canned answers, a fast retry policy and URL helpers.

use std::cell::RefCell;
use std::time::Duration;

use super::client::RetryPolicy;
use super::transport::{HttpResponse, Transport, TransportError};
use super::{NoteConfig, SyncConfig};

pub(crate) const TOKEN: &str = "u+TEST-t0ken-5ecret";
pub(crate) const NOW_US: i64 = 1_700_000_000_123_456; // 2023-11-14T22:13:20.123456Z

pub(crate) const FAST: RetryPolicy = RetryPolicy {
    rate_limit_retries: 4,
    rate_limit_backoff: Duration::from_millis(1),
    rate_limit_min_wait: Duration::from_millis(1),
    transient_retries: 2,
    transient_backoff: Duration::from_millis(1),
    cancel_poll: Duration::from_millis(5),
};

pub(crate) fn sync_config() -> SyncConfig {
    SyncConfig {
        api_url: "http://pd.test/".into(),
        token: TOKEN.into(),
        lookahead_us: 12 * 3600 * 1_000_000,
        http_timeout: Duration::from_secs(10),
        max_body_bytes: SyncConfig::DEFAULT_MAX_BODY_BYTES,
        max_rate_limit_wait: Duration::from_secs(60),
    }
}

pub(crate) fn note_config() -> NoteConfig {
    NoteConfig::new("http://pd.test/", TOKEN, Duration::from_secs(10))
}

type Handler<'a> = Box<dyn FnMut(&str) -> Result<HttpResponse, TransportError> + 'a>;

/// One request as the transport received it.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Sent {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Answers with a closure (given the URL) and records every request.
pub(crate) struct Scripted<'a> {
    handler: RefCell<Handler<'a>>,
    pub sent: RefCell<Vec<Sent>>,
    pub headers: RefCell<Vec<Vec<(String, String)>>>,
}

impl<'a> Scripted<'a> {
    pub(crate) fn new(handler: impl FnMut(&str) -> Result<HttpResponse, TransportError> + 'a) -> Self {
        Scripted { handler: RefCell::new(Box::new(handler)), sent: RefCell::default(), headers: RefCell::default() }
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.sent.borrow().iter().map(|sent| sent.url.clone()).collect()
    }

    fn record(&self, method: &'static str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) {
        let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.headers.borrow_mut().push(headers.clone());
        self.sent.borrow_mut().push(Sent { method, url: url.to_string(), headers, body: body.map(<[u8]>::to_vec) });
    }
}

impl Transport for Scripted<'_> {
    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<HttpResponse, TransportError> {
        self.record("GET", url, headers, None);
        (self.handler.borrow_mut())(url)
    }

    fn post(&self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<HttpResponse, TransportError> {
        self.record("POST", url, headers, Some(body));
        (self.handler.borrow_mut())(url)
    }
}

pub(crate) fn ok_json(value: serde_json::Value) -> Result<HttpResponse, TransportError> {
    Ok(HttpResponse::from_bytes(200, vec![], value.to_string()))
}

pub(crate) fn status(code: u16, headers: &[(&str, &str)], body: &str) -> Result<HttpResponse, TransportError> {
    let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Ok(HttpResponse::from_bytes(code, headers, body.as_bytes().to_vec()))
}

pub(crate) fn query_params(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

pub(crate) fn param(url: &str, key: &str) -> Option<String> {
    query_params(url).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

pub(crate) fn params(url: &str, key: &str) -> Vec<String> {
    query_params(url).into_iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect()
}
