//! A set-up that says what it needs (issue 12): `make demo` and `make test` start with
//! scripts/setup.sh, which stops at once, before installing anything, when Rust is missing or
//! older than the workspace's rust-version, and prints the exact command that fixes it.
//! Run here with a PATH that hides this machine's Rust, or shows a stand-in old one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_version() -> String {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("read Cargo.toml");
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \"").and_then(|r| r.strip_suffix('"')))
        .expect("rust-version in Cargo.toml")
        .to_string()
}

/// scripts/setup.sh with only `path` as PATH and `home` as HOME; asserts it stopped at once.
fn setup_with(path: &str, home: &Path) -> (Output, String) {
    let started = Instant::now();
    let out = Command::new("/bin/bash")
        .arg(repo().join("scripts/setup.sh"))
        .env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .output()
        .expect("run scripts/setup.sh");
    assert!(started.elapsed() < Duration::from_secs(5), "setup.sh stops at once, took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stderr}");
    (out, stderr)
}

fn stand_in(dir: &Path, name: &str, version_line: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\necho '{version_line}'\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pg_oncall-setup-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    dir
}

#[test]
fn without_rust_setup_stops_at_once_with_the_rustup_command() {
    let dir = scratch("none");
    let (out, stderr) = setup_with("/usr/bin:/bin", &dir);
    assert_eq!(out.status.code(), Some(1), "setup fails");
    assert!(stderr.contains("Rust (cargo, rustc) is not installed"), "says what is missing");
    assert!(
        stderr.contains(&format!("https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain {}", rust_version())),
        "gives the command that installs it"
    );
    // Installed by rustup but not on PATH: the command that puts it there.
    std::fs::create_dir_all(dir.join(".cargo/bin")).unwrap();
    stand_in(&dir.join(".cargo/bin"), "cargo", "cargo 1.95.0");
    stand_in(&dir.join(".cargo/bin"), "rustc", "rustc 1.95.0");
    let (out, stderr) = setup_with("/usr/bin:/bin", &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("which is not on PATH") && stderr.contains(". \"$HOME/.cargo/env\""), "says how to put it on PATH");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_an_older_rust_setup_stops_at_once_with_the_upgrade_command() {
    let dir = scratch("old");
    stand_in(&dir.join("bin"), "cargo", "cargo 1.80.1 (376290515 2024-07-16)");
    stand_in(&dir.join("bin"), "rustc", "rustc 1.80.1 (3f5fd8dd4 2024-08-06)");
    let path = format!("{}:/usr/bin:/bin", dir.join("bin").display());
    let (out, stderr) = setup_with(&path, &dir);
    assert_eq!(out.status.code(), Some(1), "setup fails");
    assert!(stderr.contains("rustc is 1.80.1"), "names the version found");
    assert!(stderr.contains(&format!("--default-toolchain {}", rust_version())), "not from rustup: the rustup installer");
    // With rustup: its own command.
    stand_in(&dir.join("bin"), "rustup", "rustup 1.28.2");
    let (out, stderr) = setup_with(&path, &dir);
    assert_eq!(out.status.code(), Some(1));
    let v = rust_version();
    assert!(stderr.contains(&format!("rustup toolchain install {v} && rustup default {v}")), "gives the rustup command");
    std::fs::remove_dir_all(&dir).unwrap();
}
