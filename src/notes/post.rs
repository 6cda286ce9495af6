//! The worker's side of notes: the settings they need (checked on the worker's own thread), and
//! a helper thread that posts them to PagerDuty, so that neither a slow PagerDuty nor a retry
//! delays a snapshot reload or a sync. Each POST is one attempt; a transient failure (429, 5xx,
//! timeout) is retried with backoff, and one that may have landed anyway is looked for with
//! `GET /incidents/{id}/notes` before the next POST, so one elevation never yields two notes.
//! A note in flight is lost when the worker stops (notes are not durable).

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use oncall_core::pagerduty::{self, NoteConfig, NoteError};

use super::queue::{self, Note, Outcome};
use crate::guc;

/// How often the settings are looked at again while no note arrives (they change on reload).
const RECHECK: Duration = Duration::from_secs(1);
/// Attempts of one note before it is given up (about 8 minutes of backoff in all).
const MAX_ATTEMPTS: u32 = 10;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// How long the helper thread sleeps with nothing to post.
const IDLE: Duration = Duration::from_secs(3600);

/// What posting needs; never printed (it holds the write token).
#[derive(Clone, PartialEq, Eq)]
struct Settings {
    config: NoteConfig,
    from: String,
}

enum Message {
    /// `None`: notes are off; notes waiting for a retry are given up.
    Settings(Option<Settings>),
    Notes(Vec<Note>),
}

/// The worker's handle on notes: between its other work, `pump` hands queued notes to the
/// helper thread.
pub struct Poster {
    thread: Option<Sender<Message>>,
    /// What the thread was last told: `Err(None)` notes off by choice, `Err(Some(why))` by a
    /// missing setting.
    settings: Result<Settings, Option<String>>,
    checked_at: Option<Instant>,
}

impl Poster {
    pub fn new() -> Poster {
        Poster { thread: None, settings: Err(None), checked_at: None }
    }

    /// The configuration was reloaded: look at the settings (and the write token file) again.
    pub fn settings_changed(&mut self) {
        self.checked_at = None;
    }

    /// Looks at the settings (after a reload, whenever notes are queued, else at most once a
    /// second) and hands every queued note to the helper thread, or counts it failed when notes
    /// cannot be posted.
    pub fn pump(&mut self) {
        let queued = !queue::is_empty();
        if queued || self.checked_at.is_none_or(|at| at.elapsed() >= RECHECK) {
            self.configure();
        }
        if !queued {
            return;
        }
        let notes = queue::take();
        match &self.settings {
            Ok(_) => self.send(Message::Notes(notes)),
            Err(why) => {
                queue::count(Outcome::Failed, notes.len() as u64);
                let why = why.as_deref().unwrap_or("pg_oncall.annotate_incidents is off");
                queue::set_last_error(&format!("notes are off: {why}"));
            }
        }
    }

    fn configure(&mut self) {
        self.checked_at = Some(Instant::now());
        let settings = current_settings();
        queue::set_enabled(settings.is_ok());
        if settings == self.settings {
            return;
        }
        if let Err(Some(why)) = &settings {
            queue::set_last_error(&format!("notes are off: {why}"));
        }
        self.settings = settings;
        let message = Message::Settings(self.settings.clone().ok());
        if self.thread.is_some() || self.settings.is_ok() {
            self.send(message);
        }
    }

    /// Sends to the helper thread, starting it (again) when needed.
    fn send(&mut self, message: Message) {
        let message = match &self.thread {
            Some(thread) => match thread.send(message) {
                Ok(()) => return,
                // The thread is gone (it panicked): start another, told the current settings.
                Err(mpsc::SendError(message)) => message,
            },
            None => message,
        };
        let (tx, rx) = mpsc::channel();
        let capacity = guc::NOTE_QUEUE_SIZE.get().max(1) as usize;
        if let Err(e) = crate::pg::thread::spawn("pg_oncall notes", move || run(rx, capacity)) {
            pgrx::warning!("pg_oncall: cannot start the thread that posts notes on incidents: {e}");
            if let Message::Notes(notes) = message {
                queue::count(Outcome::Failed, notes.len() as u64);
            }
            return;
        }
        if !matches!(message, Message::Settings(_)) {
            let _ = tx.send(Message::Settings(self.settings.clone().ok()));
        }
        let _ = tx.send(message);
        self.thread = Some(tx);
    }
}

/// Whether notes can be posted now, and with what.
fn current_settings() -> Result<Settings, Option<String>> {
    if !guc::ANNOTATE_INCIDENTS.get() {
        return Err(None);
    }
    let token = guc::read_token_file("write token", "pg_oncall.pagerduty_write_token_file", &guc::write_token_file())?;
    let from = guc::from_email();
    if from.is_empty() {
        return Err(Some(
            "pg_oncall.pagerduty_from_email is not set (the email of the PagerDuty user notes are posted as)".into(),
        ));
    }
    let timeout = Duration::from_millis(guc::HTTP_TIMEOUT_MS.get() as u64);
    Ok(Settings { config: NoteConfig::new(&guc::api_url(), &token, timeout), from })
}

/// A note on its way, with what its attempts so far taught.
struct Pending {
    note: Note,
    attempts: u32,
    next_at: Instant,
    /// An attempt may have stored it although no success came back: look before posting.
    may_have_posted: bool,
}

/// What one attempt came to.
enum Attempt {
    Posted,
    Failed(String),
    Retry { after: Duration, message: String },
}

/// The helper thread: posts notes in order, the first one waiting out its backoff holds the
/// others back (a rate limit or an outage concerns them all). Never touches PostgreSQL.
fn run(rx: Receiver<Message>, capacity: usize) {
    let mut settings: Option<Settings> = None;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    loop {
        let wait =
            pending.front().filter(|_| settings.is_some()).map_or(IDLE, |p| p.next_at.saturating_duration_since(Instant::now()));
        match rx.recv_timeout(wait) {
            Ok(Message::Settings(new)) => {
                settings = new;
                if settings.is_none() && !pending.is_empty() {
                    queue::count(Outcome::Failed, pending.len() as u64);
                    queue::set_last_error("notes are off: notes waiting for a retry were given up");
                    pending.clear();
                }
            }
            Ok(Message::Notes(notes)) => {
                for note in notes {
                    if pending.len() >= capacity {
                        pending.pop_front();
                        queue::count(Outcome::Dropped, 1);
                    }
                    pending.push_back(Pending { note, attempts: 0, next_at: Instant::now(), may_have_posted: false });
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(settings) = &settings else { continue };
        while let Some(head) = pending.front_mut() {
            if head.next_at > Instant::now() {
                break;
            }
            match attempt(settings, head) {
                Attempt::Posted => {
                    pending.pop_front();
                    queue::count(Outcome::Posted, 1);
                }
                Attempt::Failed(message) => {
                    pending.pop_front();
                    queue::count(Outcome::Failed, 1);
                    queue::set_last_error(&message);
                }
                Attempt::Retry { after, message } => {
                    head.next_at = Instant::now() + after;
                    queue::set_last_error(&message);
                    break;
                }
            }
        }
    }
}

fn attempt(settings: &Settings, pending: &mut Pending) -> Attempt {
    let incident = pending.note.incident_id.text().to_owned();
    let content = pending.note.content.text();
    pending.attempts += 1;
    if pending.may_have_posted {
        match pagerduty::list_notes(&settings.config, &incident) {
            Ok(notes) if notes.iter().any(|n| n.content.trim() == content.trim()) => return Attempt::Posted,
            Ok(_) => {}
            Err(e) => return retry_or_give_up(pending, &incident, e),
        }
    }
    match pagerduty::post_note(&settings.config, &incident, &settings.from, content) {
        Ok(_) => Attempt::Posted,
        Err(e) => {
            pending.may_have_posted |= e.may_have_posted();
            retry_or_give_up(pending, &incident, e)
        }
    }
}

fn retry_or_give_up(pending: &Pending, incident: &str, error: NoteError) -> Attempt {
    let what = format!("note of elevation {} on incident {incident}", pending.note.elevation);
    if error.is_permanent() {
        return Attempt::Failed(format!("{what}: {error}"));
    }
    if pending.attempts >= MAX_ATTEMPTS {
        return Attempt::Failed(format!("{what}: gave up after {} attempts: {error}", pending.attempts));
    }
    let backoff = FIRST_RETRY.saturating_mul(1 << (pending.attempts - 1).min(16)).min(LONGEST_RETRY);
    let after = error.retry_after().map_or(backoff, |asked| asked.min(LONGEST_RETRY).max(backoff));
    Attempt::Retry { after, message: format!("{what}: {error}; retrying (attempt {} of {MAX_ATTEMPTS})", pending.attempts + 1) }
}
