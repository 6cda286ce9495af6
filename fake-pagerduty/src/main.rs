//! The `fake-pagerduty` binary for `make demo`: parses the command line, starts the fake
//! on 127.0.0.1, loads an optional schedule, prints one ready line and serves until killed.

#![forbid(unsafe_code)]

use fake_pagerduty::{incidents_from_json, oncalls_from_json, users_from_json, FakePagerDuty};
use std::io::Write;

const USAGE: &str = "usage: fake-pagerduty --port N --token-file PATH [--write-token-file PATH] \
                     [--schedule FILE.json] [--incidents FILE.json] [--users FILE.json]";

fn main() {
    if let Err(msg) = run() {
        eprintln!("fake-pagerduty: {msg}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut port: Option<u16> = None;
    let mut token_file: Option<String> = None;
    let mut schedule: Option<String> = None;
    let mut write_token_file: Option<String> = None;
    let mut incidents: Option<String> = None;
    let mut users: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value =
            |name: &str| inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match name.as_str() {
            "--port" => {
                let v = value("--port")?;
                port = Some(v.parse().map_err(|_| format!("bad --port {v:?}"))?);
            }
            "--token-file" => token_file = Some(value("--token-file")?),
            "--schedule" => schedule = Some(value("--schedule")?),
            "--write-token-file" => write_token_file = Some(value("--write-token-file")?),
            "--incidents" => incidents = Some(value("--incidents")?),
            "--users" => users = Some(value("--users")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let port = port.ok_or_else(|| format!("--port is required\n{USAGE}"))?;
    let token_file = token_file.ok_or_else(|| format!("--token-file is required\n{USAGE}"))?;
    let token = read_token(&token_file)?;
    let write_token = write_token_file.as_deref().map(read_token).transpose()?;
    let oncalls = match &schedule {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read schedule {path}: {e}"))?;
            oncalls_from_json(&text).map_err(|e| format!("bad schedule {path}: {e}"))?
        }
        None => Vec::new(),
    };
    let read_json = |path: &str, what: &str| std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {path}: {e}"));
    let users = match &users {
        Some(path) => users_from_json(&read_json(path, "users")?).map_err(|e| format!("bad users {path}: {e}"))?,
        None => Vec::new(),
    };
    let incidents = match &incidents {
        Some(path) => incidents_from_json(&read_json(path, "incidents")?).map_err(|e| format!("bad incidents {path}: {e}"))?,
        None => Vec::new(),
    };
    let fake = FakePagerDuty::start_on(port, &token).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    fake.set_write_token(write_token.as_deref());
    fake.add_users(users);
    fake.set_oncalls(oncalls);
    fake.set_incidents(incidents);
    let mut out = std::io::stdout();
    writeln!(out, "fake-pagerduty listening on {}", fake.url()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}

fn read_token(path: &str) -> Result<String, String> {
    let token = std::fs::read_to_string(path).map_err(|e| format!("cannot read token file {path}: {e}"))?.trim().to_string();
    if token.is_empty() {
        return Err(format!("token file {path} is empty"));
    }
    Ok(token)
}
