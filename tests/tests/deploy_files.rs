//! The deployment files (`Dockerfile`, `deploy/postgres.Dockerfile`, `deploy/compose.yaml`,
//! `deploy/realtime-relay.service`, the env example) cannot be built or run here (no Docker
//! engine, no systemd), so these tests check what can go stale without anyone noticing: every
//! COPY source and referenced path exists in the repository, every workspace member is copied
//! into the builders, and every binary, subcommand, flag and environment variable they name is
//! one `realtime-relay --help` lists.

use std::path::{Path, PathBuf};
use std::process::Command;

use realtime_e2e::relay::relay_bin;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `realtime-relay [sub] --help`.
fn help(sub: Option<&str>) -> String {
    let mut cmd = Command::new(relay_bin());
    cmd.args(sub).arg("--help");
    let out = cmd.output().expect("run realtime-relay --help");
    assert!(out.status.success(), "realtime-relay {sub:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Dockerfile instructions with continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(t);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// Sources of the `COPY` instructions that copy from the build context (not `--from=`).
fn copy_sources(dockerfile: &str) -> Vec<String> {
    instructions(dockerfile)
        .iter()
        .filter_map(|i| i.strip_prefix("COPY "))
        .filter(|args| !args.contains("--from="))
        .flat_map(|args| {
            let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            words[..words.len() - 1].iter().map(|s| s.to_string()).collect::<Vec<_>>()
        })
        .collect()
}

/// `members = [...]` of the workspace manifest.
fn workspace_members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let line = manifest.lines().find(|l| l.trim_start().starts_with("members")).expect("members line");
    line.split('"').skip(1).step_by(2).map(String::from).collect()
}

#[test]
fn dockerfile_copy_sources_exist_and_cover_every_workspace_member() {
    for file in ["Dockerfile", "deploy/postgres.Dockerfile"] {
        let sources = copy_sources(&read(file));
        assert!(!sources.is_empty(), "{file} copies nothing");
        for src in &sources {
            assert!(repo().join(src).exists(), "{file}: COPY source {src} does not exist in the repository");
        }
        for member in workspace_members() {
            assert!(
                sources.iter().any(|s| s.trim_end_matches('/') == member),
                "{file} does not copy workspace member {member}: cargo cannot load the workspace"
            );
        }
    }
    assert!(
        copy_sources(&read("deploy/postgres.Dockerfile")).iter().any(|s| s == "sql/"),
        "the extension needs sql/"
    );
}

#[test]
fn relay_image_builds_the_relay_binary_runs_it_unprivileged_with_a_healthcheck() {
    let text = read("Dockerfile");
    let steps = instructions(&text);
    assert!(steps.iter().any(|s| s.starts_with("FROM rust:1-bookworm AS builder")));
    assert!(steps.iter().any(|s| s == "FROM debian:bookworm-slim"));
    assert!(text.contains("cargo build --release --locked -p realtime-relay"));
    let relay_manifest = read("relay/Cargo.toml");
    assert!(relay_manifest.contains("name = \"realtime-relay\""), "package and binary are realtime-relay");
    assert!(steps.iter().any(|s| s.starts_with("USER ") && !s.contains("root")), "runs as a non-root user");
    let health = steps.iter().find(|s| s.starts_with("HEALTHCHECK")).expect("HEALTHCHECK");
    assert!(health.contains(r#"CMD ["realtime-relay", "healthcheck"]"#), "{health}");
    assert!(help(None).contains("healthcheck"), "the subcommand exists");
    assert!(steps.iter().any(|s| s == r#"ENTRYPOINT ["realtime-relay"]"#));
}

#[test]
fn postgres_image_packages_the_extension_with_cargo_pgrx_0_18_0() {
    let text = read("deploy/postgres.Dockerfile");
    assert!(text.contains("cargo install cargo-pgrx --version 0.18.0 --locked"));
    assert!(text.contains("FROM postgres:15-bookworm"));
    let pgrx = read("extension/Cargo.toml");
    assert!(pgrx.contains("pgrx = \"=0.18.0\""), "the image's cargo-pgrx matches the extension's pgrx");
    assert!(repo().join("deploy/initdb").read_dir().unwrap().next().is_some(), "initdb scripts exist");
}

#[test]
fn compose_references_existing_files_and_known_relay_settings() {
    let compose = read("deploy/compose.yaml");
    let deploy = repo().join("deploy");
    let mut context = None;
    for line in compose.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("context: ") {
            let dir = deploy.join(c);
            assert!(dir.is_dir(), "build context {c} does not exist");
            context = Some(dir);
        }
        if let Some(d) = line.strip_prefix("dockerfile: ") {
            let ctx = context.as_ref().expect("dockerfile after its context");
            assert!(ctx.join(d).is_file(), "dockerfile {d} does not exist in its context");
        }
    }
    for setting in ["wal_level=logical", "max_replication_slots=", "max_wal_senders="] {
        assert!(compose.contains(setting), "Postgres command lacks {setting}");
    }
    let top = help(None);
    let vars = env_names(&compose);
    assert!(vars.len() >= 4, "compose passes the relay its settings: {vars:?}");
    for var in vars {
        assert!(top.contains(&format!("[env: {var}")), "compose sets {var}, which the relay does not read");
    }
    assert!(compose.contains(r#"command: ["check"]"#) && top.contains("check"), "the check runs first");
}

/// `DATABASE_URL` and `REALTIME_*` names set in `text` (`NAME:` or `NAME=` at a line start).
fn env_names(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| l.split([':', '=']).next())
        .filter(|k| *k == "DATABASE_URL" || (k.starts_with("REALTIME_") && !k.contains(' ')))
        .map(String::from)
        .collect()
}

#[test]
fn systemd_unit_runs_the_relay_binary_with_listed_flags_after_the_check() {
    let unit = read("deploy/realtime-relay.service");
    assert!(unit.lines().any(|l| l.starts_with("EnvironmentFile=")), "settings come from an EnvironmentFile");
    for (key, sub) in [("ExecStartPre=", Some("check")), ("ExecStart=", None)] {
        let line = unit.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key}"));
        let mut words = line.split_whitespace();
        let bin = words.next().unwrap();
        assert_eq!(Path::new(bin).file_name().unwrap(), "realtime-relay", "{key} runs {bin}");
        let rest: Vec<&str> = words.collect();
        if let Some(sub) = sub {
            assert_eq!(rest.first().copied(), Some(sub), "{key}{line}");
        }
        let listed = help(sub);
        for flag in rest.iter().filter(|w| w.starts_with("--")) {
            let name = flag.split('=').next().unwrap();
            assert!(
                listed.contains(&format!("{name} ")) || listed.contains(&format!("{name}\n")),
                "{name} is not a flag of `realtime-relay {}`",
                sub.unwrap_or("")
            );
        }
    }
    let env = read("deploy/realtime-relay.env.example");
    let top = help(None);
    for var in env_names(&env) {
        assert!(
            top.contains(&format!("[env: {var}")),
            "the env example sets {var}, which the relay does not read"
        );
    }
}
