//! A fake of PagerDuty's REST API `GET /oncalls` (plus `/_admin/*` control endpoints)
//! for pg_oncall's tests and `make demo`. This module owns the public handle
//! [`FakePagerDuty`], the state it shares with the server threads, and request dispatch.
#![forbid(unsafe_code)]

mod admin;
mod api;
mod http;
mod model;

pub use admin::{oncalls_from_json, oncalls_to_json};
pub use model::{name_for_email, oncall, user_id_for_email, Fault, Oncall, RecordedRequest, User};

use http::{Reply, Request};
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Recorded requests kept at most (the oldest are dropped past this).
const MAX_RECORDED: usize = 100_000;

/// A running fake. The server runs on background threads bound to 127.0.0.1;
/// dropping the handle stops it (open connections are closed within ~100 ms).
pub struct FakePagerDuty {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) stop: AtomicBool,
    pub(crate) active: AtomicUsize,
    pub(crate) started: Instant,
}

pub(crate) struct State {
    pub token: String,
    pub oncalls: Vec<Oncall>,
    pub raw_page: Option<String>,
    pub faults: VecDeque<Fault>,
    pub persistent: Option<Fault>,
    pub requests: Vec<RecordedRequest>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge the fake for everyone else.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps `d`, waking early (returning false) if the fake is stopping.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    fn record(&self, req: &Request) {
        let mut st = self.lock();
        if st.requests.len() >= MAX_RECORDED {
            st.requests.drain(..MAX_RECORDED / 10);
        }
        st.requests.push(RecordedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
            at: Instant::now(),
        });
    }
}

impl FakePagerDuty {
    /// Starts on 127.0.0.1 with an ephemeral port, accepting `token`.
    pub fn start(token: &str) -> std::io::Result<FakePagerDuty> {
        Self::start_on(0, token)
    }

    /// Starts on 127.0.0.1:`port` (0 = ephemeral), accepting `token`.
    pub fn start_on(port: u16, token: &str) -> std::io::Result<FakePagerDuty> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                token: token.to_string(),
                oncalls: Vec::new(),
                raw_page: None,
                faults: VecDeque::new(),
                persistent: None,
                requests: Vec::new(),
            }),
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            started: Instant::now(),
        });
        let shared2 = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("fake-pagerduty-accept-{port}"))
            .spawn(move || http::accept_loop(listener, shared2))?;
        Ok(FakePagerDuty { shared, port, accept: Some(accept) })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the whole schedule.
    pub fn set_oncalls(&self, oncalls: Vec<Oncall>) {
        self.shared.lock().oncalls = oncalls;
    }

    /// `Some(json)`: every authorized `GET /oncalls` (auth and Accept ok) answers 200 with exactly
    /// this body, query parameters unchecked. `None`: back to generated answers.
    pub fn set_raw_page(&self, body: Option<String>) {
        self.shared.lock().raw_page = body;
    }

    /// Queues a fault; each request to `/oncalls` consumes the next one (FIFO) before normal handling.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// A fault applied to every request to `/oncalls` while set, once the queue is empty.
    pub fn set_persistent_fault(&self, fault: Option<Fault>) {
        self.shared.lock().persistent = fault;
    }

    /// Every request received, in order (including 401s and faulted ones; `/_admin/*` excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Changes the accepted token.
    pub fn set_token(&self, token: &str) {
        self.shared.lock().token = token.to_string();
    }

    /// Connections currently being served (diagnostics; e.g. to check a `Hang` was released).
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }
}

impl Drop for FakePagerDuty {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the accept thread sees `stop` and exits.
        let woke = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.port)), Duration::from_secs(1)).is_ok();
        if let Some(handle) = self.accept.take() {
            if woke {
                let _ = handle.join();
            }
        }
        // Connection threads poll `stop` every 100 ms; give them a moment to close their sockets.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Routes one parsed request: admin, recorded + faults + `/oncalls`, or 404.
pub(crate) fn dispatch(shared: &Shared, req: &Request) -> Reply {
    if req.path == "/_admin" || req.path.starts_with("/_admin/") {
        return admin::handle(shared, req);
    }
    shared.record(req);
    if req.path != "/oncalls" {
        return api::not_found();
    }
    let fault = {
        let mut st = shared.lock();
        st.faults.pop_front().or_else(|| st.persistent.clone())
    };
    let Some(fault) = fault else {
        return api::answer(shared, req);
    };
    match fault {
        Fault::Status { code, body, headers } => {
            let mut headers = headers;
            if body.is_some() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
            Reply::Full { status: code, headers, body: body.unwrap_or_default().into_bytes() }
        }
        Fault::RateLimited { reset_secs: Some(reset) } => Reply::Full {
            status: 429,
            headers: vec![
                ("Content-Type".into(), "application/json; charset=utf-8".into()),
                ("ratelimit-limit".into(), "960".into()),
                ("ratelimit-remaining".into(), "0".into()),
                ("ratelimit-reset".into(), reset.to_string()),
            ],
            body: api::error_body("Rate Limit Exceeded", 2020, &[]).into_bytes(),
        },
        Fault::RateLimited { reset_secs: None } => Reply::Full { status: 429, headers: Vec::new(), body: Vec::new() },
        Fault::Delay(d) => {
            if shared.sleep(d) {
                api::answer(shared, req)
            } else {
                Reply::Close
            }
        }
        Fault::Truncated => Reply::Truncated {
            headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
            body: api::success_body(shared, req),
        },
        Fault::Garbage => Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
            body: b"<html><head><title>502 Bad Gateway</title></head><body>upstream hiccup</body></html>\n".to_vec(),
        },
        Fault::HugeBody { bytes } => Reply::Stream { bytes },
        Fault::Hang => Reply::Hang,
    }
}
