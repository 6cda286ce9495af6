//! A fake of PagerDuty's REST API — `GET /oncalls`, `GET /incidents`,
//! `GET|POST /incidents/{id}/notes` — plus `/_admin/*` control endpoints, for pg_oncall's
//! tests and `make demo`. This module owns the public handle [`FakePagerDuty`], the state it
//! shares with the server threads, request dispatch and fault selection.
#![forbid(unsafe_code)]

mod admin;
mod api;
mod error_body;
mod http;
mod incidents;
mod model;

pub use admin::{incidents_from_json, incidents_to_json, oncalls_from_json, oncalls_to_json, users_from_json};
pub use model::{
    incident, name_for_email, oncall, user_id_for_email, Endpoint, Fault, Incident, Note, Oncall, RecordedRequest, User,
};

use http::{Reply, Request};
use std::collections::{HashMap, VecDeque};
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
    /// The read-only token (`oncalls.read`, `incidents.read`, ...).
    pub token: String,
    /// A full-access token (also `incidents.write`), if any.
    pub write_token: Option<String>,
    pub oncalls: Vec<Oncall>,
    pub incidents: Vec<Incident>,
    /// Users of the account besides those on call or assigned (e.g. the `From` bot user).
    pub users: Vec<User>,
    pub notes: Vec<Note>,
    pub next_note: u64,
    pub raw_page: Option<String>,
    /// Queued faults, each for one endpoint or (`None`) any.
    pub faults: VecDeque<(Option<Endpoint>, Fault)>,
    /// The persistent fault for every endpoint without its own.
    pub persistent: Option<Fault>,
    pub persistent_by_endpoint: HashMap<Endpoint, Fault>,
    pub requests: Vec<RecordedRequest>,
}

impl State {
    fn all_users(&self) -> impl Iterator<Item = &User> {
        self.users
            .iter()
            .chain(self.oncalls.iter().map(|o| &o.user))
            .chain(self.incidents.iter().flat_map(|i| i.assignees.iter()))
    }

    /// Every user of the account: added, on call, or assigned; first occurrence per email.
    pub(crate) fn known_users(&self) -> Vec<User> {
        let mut seen = std::collections::HashSet::new();
        self.all_users().filter(|u| seen.insert(u.email.to_ascii_lowercase())).cloned().collect()
    }

    /// The known user with this email (case-insensitive).
    pub(crate) fn user_by_email(&self, email: &str) -> Option<User> {
        let email = email.trim();
        self.all_users().find(|u| u.email.eq_ignore_ascii_case(email)).cloned()
    }

    /// A user derived from an email becomes the added or on-call user with that email, if any
    /// (so `user_ids[]` means the same user on `/oncalls` and `/incidents`).
    pub(crate) fn canonical_user(&self, user: User) -> User {
        if user != User::from_email(&user.email) {
            return user;
        }
        self.users
            .iter()
            .chain(self.oncalls.iter().map(|o| &o.user))
            .find(|u| u.email.eq_ignore_ascii_case(&user.email))
            .cloned()
            .unwrap_or(user)
    }

    /// Numbers the incident if needed, makes its assignees canonical (none once resolved), and
    /// adds it or replaces the one with the same id. Returns its id.
    pub(crate) fn upsert_incident(&mut self, mut incident: Incident) -> String {
        if incident.incident_number == 0 {
            incident.incident_number = self.incidents.iter().map(|i| i.incident_number).max().unwrap_or(0) + 1;
        }
        let assignees = std::mem::take(&mut incident.assignees);
        if incident.status != "resolved" {
            incident.assignees = assignees.into_iter().map(|u| self.canonical_user(u)).collect();
        }
        let id = incident.id.clone();
        match self.incidents.iter_mut().find(|i| i.id == id) {
            Some(existing) => *existing = incident,
            None => self.incidents.push(incident),
        }
        id
    }
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
            body: req.body.clone(),
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
                write_token: None,
                oncalls: Vec::new(),
                incidents: Vec::new(),
                users: Vec::new(),
                notes: Vec::new(),
                next_note: 0,
                raw_page: None,
                faults: VecDeque::new(),
                persistent: None,
                persistent_by_endpoint: HashMap::new(),
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

    /// Queues a fault for any endpoint; each API request consumes the first queued fault meant
    /// for its endpoint or for any (FIFO) before normal handling.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back((None, fault));
    }

    /// Queues a fault that only a request to `endpoint` consumes.
    pub fn push_fault_for(&self, endpoint: Endpoint, fault: Fault) {
        self.shared.lock().faults.push_back((Some(endpoint), fault));
    }

    /// A fault applied to every API request while set, once no queued fault applies (an
    /// endpoint's own persistent fault wins over this one).
    pub fn set_persistent_fault(&self, fault: Option<Fault>) {
        self.shared.lock().persistent = fault;
    }

    /// A persistent fault for one endpoint only (`None` clears it).
    pub fn set_persistent_fault_for(&self, endpoint: Endpoint, fault: Option<Fault>) {
        let mut st = self.shared.lock();
        if let Some(fault) = fault {
            st.persistent_by_endpoint.insert(endpoint, fault);
        } else {
            st.persistent_by_endpoint.remove(&endpoint);
        }
    }

    /// A second token with full access (scope `incidents.write` included); the main token
    /// stays read-only, so `POST /incidents/{id}/notes` with it is a 403. `None` removes it.
    pub fn set_write_token(&self, token: Option<&str>) {
        self.shared.lock().write_token = token.map(str::to_string);
    }

    /// Replaces every incident (numbered in order where `incident_number` is 0).
    pub fn set_incidents(&self, incidents: Vec<Incident>) {
        let mut st = self.shared.lock();
        st.incidents.clear();
        for incident in incidents {
            st.upsert_incident(incident);
        }
    }

    /// Adds an incident (or replaces the one with the same id); returns its number.
    pub fn add_incident(&self, incident: Incident) -> u64 {
        let mut st = self.shared.lock();
        let id = st.upsert_incident(incident);
        st.incidents.iter().find(|i| i.id == id).map_or(0, |i| i.incident_number)
    }

    /// Resolves an incident (its assignments end, as in PagerDuty). False if unknown.
    pub fn resolve_incident(&self, id: &str) -> bool {
        self.set_incident_status(id, "resolved")
    }

    /// Sets the status (`triggered`, `acknowledged`, `resolved`). False if unknown.
    pub fn set_incident_status(&self, id: &str, status: &str) -> bool {
        self.update_incident(id, |i| *i = i.clone().with_status(status))
    }

    /// Replaces the assignees (known users by email, else derived ones). False if unknown.
    pub fn assign_incident(&self, id: &str, emails: &[&str]) -> bool {
        let users: Vec<User> = emails.iter().map(|e| User::from_email(e)).collect();
        self.update_incident(id, move |i| i.assignees = users)
    }

    fn update_incident(&self, id: &str, change: impl FnOnce(&mut Incident)) -> bool {
        let mut st = self.shared.lock();
        let Some(mut incident) = st.incidents.iter().find(|i| i.id == id).cloned() else {
            return false;
        };
        change(&mut incident);
        st.upsert_incident(incident);
        true
    }

    /// Every incident, in insertion order.
    pub fn incidents(&self) -> Vec<Incident> {
        self.shared.lock().incidents.clone()
    }

    /// Adds users of the account (e.g. the `From` user of notes), besides those on call or
    /// assigned, which are users too.
    pub fn add_users(&self, users: Vec<User>) {
        self.shared.lock().users.extend(users);
    }

    /// Every note received through `POST /incidents/{id}/notes`, in order.
    pub fn notes(&self) -> Vec<Note> {
        self.shared.lock().notes.clone()
    }

    pub fn clear_notes(&self) {
        self.shared.lock().notes.clear();
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

/// An API route the fake serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Oncalls,
    Incidents,
    /// `/incidents/{id}/notes`, the id percent-decoded.
    Notes(String),
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        match path {
            "/oncalls" => Some(Route::Oncalls),
            "/incidents" => Some(Route::Incidents),
            _ => {
                let id = path.strip_prefix("/incidents/")?.strip_suffix("/notes")?;
                (!id.is_empty() && !id.contains('/')).then(|| Route::Notes(http::percent_decode_path(id)))
            }
        }
    }

    pub(crate) fn endpoint(&self) -> Endpoint {
        match self {
            Route::Oncalls => Endpoint::Oncalls,
            Route::Incidents => Endpoint::Incidents,
            Route::Notes(_) => Endpoint::Notes,
        }
    }
}

/// Normal handling of an API request (faults already dealt with).
fn answer(shared: &Shared, req: &Request, route: &Route) -> Reply {
    match route {
        Route::Oncalls => api::answer(shared, req),
        Route::Incidents => incidents::list(shared, req),
        Route::Notes(id) => incidents::notes(shared, req, id),
    }
}

/// Routes one parsed request: admin, recorded + faults + an API route, or 404.
pub(crate) fn dispatch(shared: &Shared, req: &Request) -> Reply {
    if req.path == "/_admin" || req.path.starts_with("/_admin/") {
        return admin::handle(shared, req);
    }
    shared.record(req);
    let Some(route) = Route::of(&req.path) else {
        return api::not_found();
    };
    let endpoint = route.endpoint();
    let fault = {
        let mut st = shared.lock();
        let queued = st.faults.iter().position(|(target, _)| target.is_none_or(|t| t == endpoint));
        match queued.and_then(|i| st.faults.remove(i)) {
            Some((_, fault)) => Some(fault),
            None => st.persistent_by_endpoint.get(&endpoint).cloned().or_else(|| st.persistent.clone()),
        }
    };
    let Some(fault) = fault else {
        return answer(shared, req, &route);
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
            body: error_body::error_body("Rate Limit Exceeded", 2020, &[]).into_bytes(),
        },
        Fault::RateLimited { reset_secs: None } => Reply::Full { status: 429, headers: Vec::new(), body: Vec::new() },
        Fault::Delay(d) => {
            if shared.sleep(d) {
                answer(shared, req, &route)
            } else {
                Reply::Close
            }
        }
        Fault::Truncated => match &route {
            // A GET: the body a success would have, auth not checked.
            Route::Oncalls => truncated(api::success_body(shared, req)),
            Route::Incidents => truncated(incidents::list_success_body(shared, req)),
            // A POST is processed as usual (the note is stored), only its answer is cut.
            Route::Notes(_) => match answer(shared, req, &route) {
                Reply::Full { status: 200, body, .. } => truncated(body),
                other => other,
            },
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

fn truncated(body: Vec<u8>) -> Reply {
    Reply::Truncated { headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())], body }
}
