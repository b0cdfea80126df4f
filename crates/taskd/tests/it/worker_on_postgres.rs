//! A real `taskd serve` on PostgreSQL and a real `taskd worker`, in a database of their
//! own (created in the one `TEST_DATABASE_URL` names, dropped after).
//!
//! A command that prints a NUL: PostgreSQL cannot store one, and a result batch holding
//! one was refused whole (500) on every retry, so every command of the batch ran again at
//! each lease expiry until its sub-task failed `LEASE_EXPIRED`, a succeeded one
//! included. Now the worker replaces the NUL (U+FFFD) and every result is taken at once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use taskd_signature::{SigningKey, SigningRequest, format_sdk_date, sign};

const BIN: &str = env!("CARGO_BIN_EXE_taskd");
const AK: &str = "NULWORKERAKAAAAAAAAA";
const SK: &str = "nul-worker-secret-0123456789abcdefghij";
const PROJECT: &str = "fedcba9876543210fedcba9876543210";
const PATIENCE: Duration = Duration::from_secs(60);

/// `TEST_DATABASE_URL`, or `None` when the PostgreSQL tests are skipped on purpose
/// (`TASKD_SKIP_POSTGRES=1`); without either the test fails, as the store's own do.
fn admin_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("TASKD_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("skipped: TASKD_SKIP_POSTGRES=1 and TEST_DATABASE_URL is not set");
            None
        }
        _ => panic!("set TEST_DATABASE_URL (or TASKD_SKIP_POSTGRES=1 to skip this test)"),
    }
}

/// A database for one test, dropped with this value.
struct Database {
    admin_url: String,
    name: String,
}

impl Database {
    async fn create(admin_url: &str) -> Database {
        let name = format!(
            "taskd_it_nul_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let mut conn = PgConnection::connect(admin_url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        Database {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// The admin URL with this database instead of its own.
    fn url(&self) -> String {
        let (base, query) = match self.admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (self.admin_url.as_str(), String::new()),
        };
        let at = base.rfind('/').expect("a database URL has a path");
        format!("{}/{}{query}", &base[..at], self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Off the test's runtime: drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(database_url: &str, log: &std::path::Path) -> (Process, u16) {
    let port = crate::free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .env("TASKD_BOOTSTRAP_PROJECT_ID", PROJECT)
        .env("TASKD_BOOTSTRAP_AK", AK)
        .env("TASKD_BOOTSTRAP_SK", SK)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("taskd listening") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the server exited early: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    (Process(child), port)
}

/// A signed IoTDA call, as the SDK makes it.
async fn call(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let host = format!("127.0.0.1:{port}");
    let date = format_sdk_date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let headers = [
        ("Content-Type", "application/json"),
        ("Host", host.as_str()),
        ("X-Project-Id", PROJECT),
        ("X-Sdk-Date", date.as_str()),
    ];
    let signed = sign(
        &SigningRequest {
            method,
            path,
            query: &[],
            headers: &headers,
            body: body.as_bytes(),
        },
        &SigningKey::Plain {
            access_key: AK,
            secret_key: SK,
        },
    );
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("http://{host}{path}"))
        .header("Authorization", signed.authorization)
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// Prints per target: a NUL in the output, a NUL in the error message, plain output.
const SCRIPT: &str = r#"
echo "$TASKD_TARGET" >> "$RUNS_FILE"
case "$TASKD_TARGET" in
  dev-nul-out) printf 'done\000tail' ;;
  dev-nul-err) printf 'broke\000down' >&2; exit 3 ;;
  *) echo fine ;;
esac
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_printing_a_nul_has_its_result_kept_and_costs_no_other_its_own() {
    let Some(admin_url) = admin_url() else {
        return;
    };
    let db = Database::create(&admin_url).await;
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_server(&db.url(), &dir.path().join("server.log"));

    let batchtasks = format!("/v5/iot/{PROJECT}/batchtasks");
    let created = call(
        port,
        "POST",
        &batchtasks,
        Some(json!({
            "task_name": "nul", "task_type": "firmwareUpgrade",
            "targets": ["dev-ok", "dev-nul-out", "dev-nul-err"],
            "document": {"package_ids": ["32822e5744a45ede319d2c50"]},
        })),
    )
    .await;
    let task_id = created["task_id"].as_str().unwrap().to_owned();

    let runs = dir.path().join("runs");
    let _worker = Process(
        Command::new(BIN)
            .args(["worker", "--endpoint", &format!("http://127.0.0.1:{port}")])
            .args(["--ak", AK, "--project-id", PROJECT])
            .args(["--task-type", "firmwareUpgrade", "--concurrency", "3"])
            .args(["--", "sh", "-c", SCRIPT])
            .env("TASKD_SK", SK)
            .env("RUNS_FILE", &runs)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("worker.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    let path = format!("{batchtasks}/{task_id}");
    let deadline = Instant::now() + PATIENCE;
    let shown = loop {
        let shown = call(port, "GET", &path, None).await;
        if shown["batchtask"]["status"] != "Processing"
            && shown["batchtask"]["status"] != "Waitting"
        {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "the task did not finish: {shown}\nworker log:\n{}",
            std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let detail = |target: &str| -> Value {
        shown["task_details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["target"] == target)
            .cloned()
            .unwrap_or_else(|| panic!("{target} not in {shown}"))
    };
    assert_eq!(shown["batchtask"]["status"], "PartialSuccess", "{shown}");
    assert_eq!(detail("dev-ok")["status"], "Success");
    assert_eq!(detail("dev-ok")["output"], "fine");
    assert_eq!(detail("dev-nul-out")["status"], "Success");
    assert_eq!(detail("dev-nul-out")["output"], "done\u{fffd}tail");
    assert_eq!(detail("dev-nul-err")["status"], "Fail");
    assert_eq!(
        detail("dev-nul-err")["error"],
        json!({"error_code": "EXIT_3", "error_msg": "broke\u{fffd}down"})
    );
    // Each command ran once: no result was lost and run again.
    let mut ran: Vec<String> = std::fs::read_to_string(&runs)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    ran.sort();
    assert_eq!(ran, ["dev-nul-err", "dev-nul-out", "dev-ok"]);
}
