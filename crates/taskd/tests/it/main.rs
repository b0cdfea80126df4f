//! The `taskd` binary as a user runs it: a real process on a free port.

mod client;
mod connections;
mod log_destination;
mod simulate;
mod worker;
mod worker_on_postgres;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_taskd");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out))
}

struct Server {
    child: Child,
    port: u16,
}

/// How to start a server beyond its data directory and environment.
struct Launch {
    stderr: Stdio,
    /// The server's `RLIMIT_NOFILE`, soft and hard (the workspace forbids the `unsafe`
    /// of `pre_exec`, so a shell sets it and `exec`s the server).
    nofile: Option<u32>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            stderr: Stdio::null(),
            nofile: None,
        }
    }
}

impl Server {
    fn start(dir: &Path, envs: &[(&str, &str)]) -> (Server, Vec<String>) {
        Server::launch(dir, envs, Launch::default())
    }

    fn launch(dir: &Path, envs: &[(&str, &str)], launch: Launch) -> (Server, Vec<String>) {
        let port = free_port();
        let mut command = match launch.nofile {
            None => Command::new(BIN),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
                sh
            }
        };
        let mut child = command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir)
            .env_remove("TASKD_BOOTSTRAP_PROJECT_ID")
            .env_remove("TASKD_BOOTSTRAP_AK")
            .env_remove("TASKD_BOOTSTRAP_SK")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(launch.stderr)
            .spawn()
            .unwrap();
        // Readiness: stdout announces the listener once the server is up.
        let mut lines = Vec::new();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "server exited early: {lines:?}"
            );
            let done = line.starts_with("taskd listening");
            lines.push(line.trim_end().to_string());
            if done {
                break;
            }
        }
        (Server { child, port }, lines)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A test that fails midway must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn first_start_creates_and_prints_a_credential_once_then_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let (server, lines) = Server::start(dir.path(), &[]);
    let text = lines.join("\n");
    assert!(text.contains("project_id: "), "{text}");
    assert!(text.contains("secret_key: "), "{text}");
    let (status, body) = http_get(server.port, "/healthz").unwrap();
    assert_eq!(status, 200);
    assert!(body.to_ascii_lowercase().contains("x-request-id"));
    assert!(server.terminate().success(), "graceful stop exits 0");

    let (ok, listed, _) = cli(dir.path(), &["credentials", "list", "--json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains("secret"),
        "list never shows secrets"
    );

    // Second start: a credential exists, nothing is printed.
    let (server, lines) = Server::start(dir.path(), &[]);
    assert!(!lines.join("\n").contains("secret_key"));
    assert!(server.terminate().success());
}

#[test]
fn bootstrap_env_and_credentials_cli_work_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let project = "0123456789abcdef0123456789abcdef";
    let (server, lines) = Server::start(
        dir.path(),
        &[
            ("TASKD_BOOTSTRAP_PROJECT_ID", project),
            ("TASKD_BOOTSTRAP_AK", "BOOTAK"),
            ("TASKD_BOOTSTRAP_SK", "boot-secret"),
        ],
    );
    assert!(
        !lines.join("\n").contains("secret_key"),
        "a bootstrap credential is not printed"
    );

    let (ok, out, err) = cli(
        dir.path(),
        &[
            "credentials",
            "create",
            "--project-id",
            "fedcba9876543210fedcba9876543210",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["access_key"].as_str().unwrap().len(), 20);
    assert_eq!(created["secret_key"].as_str().unwrap().len(), 40);

    let (ok, out, _) = cli(dir.path(), &["credentials", "list", "--json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    let (ok, _, _) = cli(dir.path(), &["credentials", "revoke", "--ak", "BOOTAK"]);
    assert!(ok);
    let (ok, _, err) = cli(dir.path(), &["credentials", "revoke", "--ak", "BOOTAK"]);
    assert!(!ok && err.contains("no active access key"), "{err}");
    let (ok, _, err) = cli(
        dir.path(),
        &["credentials", "create", "--project-id", "not-hex"],
    );
    assert!(!ok && err.contains("32 hexadecimal"), "{err}");
    // The same access key cannot move to another project.
    let (ok, _, err) = cli(
        dir.path(),
        &[
            "credentials",
            "create",
            "--project-id",
            "fedcba9876543210fedcba9876543210",
            "--ak",
            "BOOTAK",
            "--sk",
            "x",
        ],
    );
    assert!(!ok, "{err}");
    assert!(server.terminate().success());
}

#[test]
fn partial_bootstrap_env_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("TASKD_BOOTSTRAP_AK", "X")
        .env_remove("TASKD_BOOTSTRAP_PROJECT_ID")
        .env_remove("TASKD_BOOTSTRAP_SK")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be given together"));
}

#[test]
fn migrate_creates_the_schema_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = Command::new(BIN)
            .arg("migrate")
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("TASKD_DATABASE_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("schema up to date: sqlite:"));
    }
    assert!(dir.path().join("taskd.sqlite3").exists());
}

#[test]
fn an_unreachable_database_url_fails_fast_with_a_clear_error() {
    let port = free_port(); // nothing listens there
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            &format!("postgres://taskd:secret@127.0.0.1:{port}/taskd"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PostgreSQL") && !err.contains("secret"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}
