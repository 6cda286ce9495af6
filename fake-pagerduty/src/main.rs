//! The `fake-pagerduty` binary for `make demo`: parses the command line, starts the fake
//! on 127.0.0.1, loads an optional schedule, prints one ready line and serves until killed.

#![forbid(unsafe_code)]

use fake_pagerduty::{oncalls_from_json, FakePagerDuty};
use std::io::Write;

const USAGE: &str = "usage: fake-pagerduty --port N --token-file PATH [--schedule FILE.json]";

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
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let port = port.ok_or_else(|| format!("--port is required\n{USAGE}"))?;
    let token_file = token_file.ok_or_else(|| format!("--token-file is required\n{USAGE}"))?;
    let token =
        std::fs::read_to_string(&token_file).map_err(|e| format!("cannot read token file {token_file}: {e}"))?.trim().to_string();
    if token.is_empty() {
        return Err(format!("token file {token_file} is empty"));
    }
    let oncalls = match &schedule {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read schedule {path}: {e}"))?;
            oncalls_from_json(&text).map_err(|e| format!("bad schedule {path}: {e}"))?
        }
        None => Vec::new(),
    };
    let fake = FakePagerDuty::start_on(port, &token).map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    fake.set_oncalls(oncalls);
    let mut out = std::io::stdout();
    writeln!(out, "fake-pagerduty listening on {}", fake.url()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}
