//! `taskd worker` as a process, against a fake taskd that serves the three worker
//! endpoints of `docs/worker-protocol.md` and verifies every signature for real.
//!
//! Nothing here sleeps waiting for work: the fake announces each change of its state,
//! and commands that must stay running block on a FIFO the test opens when it wants
//! them to finish; they announce their start and end on another FIFO.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use taskd_signature::{ReceivedRequest, VerifyPolicy, parse_authorization, verify};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};

const BIN: &str = env!("CARGO_BIN_EXE_taskd");
const AK: &str = "WORKERAKTESTAAAAAAAA";
const SK: &str = "worker-secret-0123456789abcdefghijklmn";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const TASK_TYPE: &str = "firmwareUpgrade";
/// The longest any test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The fake taskd

#[derive(Default)]
struct FakeState {
    /// Sub-tasks (claim entries) ready to be claimed, oldest first.
    ready: VecDeque<Value>,
    claims: Vec<Value>,
    handed_out: Vec<String>,
    heartbeats: Vec<(String, Value)>,
    /// Every result entry of every batch that was answered 200.
    results: Vec<Value>,
    result_posts: usize,
    /// Answer this many claims / results posts with 503 before serving them.
    fail_claims: usize,
    fail_results: usize,
    /// Heartbeats for these sub-tasks answer 409 (lease lost).
    lose_lease: HashSet<String>,
    /// Results for these sub-tasks are answered `accepted: false`.
    refuse: HashSet<String>,
    /// Requests whose signature did not verify, and why.
    bad_signatures: Vec<String>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
    changed: Arc<watch::Sender<u64>>,
    addr: SocketAddr,
}

impl Fake {
    async fn start() -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            state: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
            addr: listener.local_addr().unwrap(),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn update<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        let r = f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|n| *n += 1);
        r
    }

    fn read<R>(&self, f: impl FnOnce(&FakeState) -> R) -> R {
        f(&self.state.lock().unwrap())
    }

    fn push(&self, sub_tasks: impl IntoIterator<Item = Value>) {
        self.update(|s| s.ready.extend(sub_tasks));
    }

    /// Waits until `done` holds, re-checking on every change of the fake's state.
    async fn wait_for(&self, what: &str, done: impl Fn(&FakeState) -> bool) {
        let mut changed = self.changed.subscribe();
        let wait = async {
            loop {
                if self.read(&done) {
                    return;
                }
                changed.changed().await.unwrap();
            }
        };
        if tokio::time::timeout(PATIENCE, wait).await.is_err() {
            let s = self.state.lock().unwrap();
            panic!(
                "timed out waiting for {what}; claims {:?}, results {:?}, heartbeats {}, bad signatures {:?}",
                s.claims,
                s.results,
                s.heartbeats.len(),
                s.bad_signatures
            );
        }
    }

    fn result_for(&self, sub_task_id: &str) -> Option<Value> {
        self.read(|s| {
            s.results
                .iter()
                .find(|r| r["sub_task_id"] == sub_task_id)
                .cloned()
        })
    }
}

fn envelope(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error_code": code, "error_msg": message})),
    )
        .into_response()
}

async fn handle(State(fake): State<Fake>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    if let Err(why) = check_signature(&parts, &body) {
        fake.update(|s| s.bad_signatures.push(why.clone()));
        return envelope(StatusCode::UNAUTHORIZED, "TASKD.000401", &why);
    }
    let segments: Vec<&str> = parts.uri.path().split('/').skip(1).collect();
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return envelope(StatusCode::BAD_REQUEST, "TASKD.000400", &e.to_string()),
    };
    if parts.method != "POST" {
        return envelope(StatusCode::METHOD_NOT_ALLOWED, "TASKD.000405", "POST only");
    }
    match segments.as_slice() {
        ["taskd", "v1", project, "claims"] if *project == PROJECT => claim(&fake, body).await,
        ["taskd", "v1", project, "sub-tasks", id, "heartbeat"] if *project == PROJECT => {
            let lost = fake.update(|s| {
                s.heartbeats.push((id.to_string(), body));
                s.lose_lease.contains(*id)
            });
            if lost {
                envelope(StatusCode::CONFLICT, "TASKD.010409", "the lease is lost")
            } else {
                axum::Json(json!({"lease_expires_at": "2026-11-23T10:00:00.000Z"})).into_response()
            }
        }
        ["taskd", "v1", project, "results"] if *project == PROJECT => fake.update(|s| {
            s.result_posts += 1;
            if s.fail_results > 0 {
                s.fail_results -= 1;
                return envelope(StatusCode::SERVICE_UNAVAILABLE, "TASKD.000503", "try later");
            }
            let entries = body["results"].as_array().cloned().unwrap_or_default();
            assert!((1..=500).contains(&entries.len()), "batch of 1-500");
            let acks: Vec<Value> = entries
                .iter()
                .map(|r| {
                    let id = r["sub_task_id"].as_str().unwrap().to_string();
                    if s.refuse.contains(&id) {
                        json!({"sub_task_id": id, "accepted": false, "reason": "lease_lost"})
                    } else {
                        json!({"sub_task_id": id, "accepted": true})
                    }
                })
                .collect();
            s.results.extend(entries);
            axum::Json(json!({"results": acks})).into_response()
        }),
        _ => envelope(StatusCode::NOT_FOUND, "TASKD.000404", "no such resource"),
    }
}

/// A long poll: hands out up to `max` ready sub-tasks, waiting up to `wait_seconds`
/// for one to become ready. Answers as protocol 2: each task's document once, in
/// `tasks`, not in the entries.
async fn claim(fake: &Fake, body: Value) -> Response {
    let max = body["max"].as_u64().unwrap_or(1) as usize;
    let wait = Duration::from_secs(body["wait_seconds"].as_u64().unwrap_or(0));
    let fail = fake.update(|s| {
        s.claims.push(body.clone());
        if s.fail_claims > 0 {
            s.fail_claims -= 1;
            true
        } else {
            false
        }
    });
    if fail {
        return envelope(StatusCode::SERVICE_UNAVAILABLE, "TASKD.000503", "try later");
    }
    let mut changed = fake.changed.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let taken: Vec<Value> = {
            let mut s = fake.state.lock().unwrap();
            let n = max.min(s.ready.len());
            s.ready.drain(..n).collect()
        };
        if !taken.is_empty() {
            fake.update(|s| {
                s.handed_out.extend(
                    taken
                        .iter()
                        .map(|t| t["sub_task_id"].as_str().unwrap().to_string()),
                )
            });
            let mut tasks = serde_json::Map::new();
            let entries: Vec<Value> = taken
                .into_iter()
                .map(|mut entry| {
                    let document = entry
                        .as_object_mut()
                        .unwrap()
                        .remove("document")
                        .unwrap_or(Value::Null);
                    let task_id = entry["task_id"].as_str().unwrap().to_owned();
                    tasks.insert(task_id, json!({ "document": document }));
                    entry
                })
                .collect();
            return axum::Json(json!({"tasks": tasks, "sub_tasks": entries})).into_response();
        }
        if tokio::time::timeout_at(deadline, changed.changed())
            .await
            .is_err()
        {
            return axum::Json(json!({"tasks": {}, "sub_tasks": []})).into_response();
        }
    }
}

fn check_signature(parts: &axum::http::request::Parts, body: &[u8]) -> Result<(), String> {
    let header = parts
        .headers
        .get("authorization")
        .ok_or("no Authorization header")?
        .to_str()
        .map_err(|e| e.to_string())?;
    let auth = parse_authorization(header).map_err(|e| e.to_string())?;
    if auth.access_key != AK {
        return Err(format!("unknown access key {}", auth.access_key));
    }
    for needed in ["content-type", "host", "x-sdk-date"] {
        if !auth.signed_headers.contains(&needed) {
            return Err(format!("{needed} is not signed"));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let received = ReceivedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body,
    };
    verify(&received, &auth, SK, &VerifyPolicy::new(now, "iotdm")).map_err(|e| e.to_string())
}

fn sub_task(id: &str, attempt: u32, target: &str) -> Value {
    json!({
        "sub_task_id": id,
        "attempt": attempt,
        "task_id": format!("task-of-{id}"),
        "task_type": TASK_TYPE,
        "task_name": "fw_2_1",
        "project_id": PROJECT,
        "instance_id": "inst-1",
        "app_id": null,
        "target": target,
        "document": {"package_ids": ["pkg-1"], "note": "it's \"quoted\""},
        "input": {"column": "cell"},
        "lease_expires_at": "2026-11-23T10:00:00.000Z"
    })
}

// ---------------------------------------------------------------------------------------
// The worker process

struct Worker {
    child: tokio::process::Child,
    log: Arc<Mutex<Vec<String>>>,
    log_changed: watch::Receiver<usize>,
}

impl Worker {
    fn spawn(fake: &Fake, sk: &str, extra: &[&str], script: &str) -> Worker {
        let mut child = tokio::process::Command::new(BIN)
            .args([
                "worker",
                "--endpoint",
                &fake.endpoint(),
                "--ak",
                AK,
                "--project-id",
                PROJECT,
                "--task-type",
                "otherType",
                "--task-type",
                TASK_TYPE,
                "--worker-id",
                "test-host/pid-1",
            ])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .env("TASKD_SK", sk)
            .env("RUST_LOG", "info")
            .env_remove("TASKD_ENDPOINT")
            .env_remove("TASKD_AK")
            .env_remove("TASKD_PROJECT_ID")
            .env_remove("TASKD_LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, log_changed) = watch::channel(0);
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push(line);
                tx.send_replace(log.len());
            }
        });
        Worker {
            child,
            log,
            log_changed,
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    async fn wait_log(&mut self, needle: &str) {
        let wait = async {
            loop {
                if self.log_text().contains(needle) {
                    return;
                }
                self.log_changed.changed().await.unwrap();
            }
        };
        if tokio::time::timeout(PATIENCE, wait).await.is_err() {
            panic!("no log line with {needle:?}:\n{}", self.log_text());
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    async fn exit(&mut self) -> std::process::ExitStatus {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the worker exits")
            .unwrap();
        // Give the log reader the last lines.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while self.log_changed.changed().await.is_ok() {}
        })
        .await;
        status
    }

    /// SIGTERM, then the exit status.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.exit().await
    }
}

// ---------------------------------------------------------------------------------------
// FIFOs: commands that run until the test lets them finish

struct Gates {
    dir: tempfile::TempDir,
    events: mpsc::UnboundedReceiver<String>,
}

impl Gates {
    /// One gate per sub-task id, and the event FIFO.
    fn new(ids: &[&str]) -> Gates {
        let dir = tempfile::tempdir().unwrap();
        let mode = nix::sys::stat::Mode::S_IRWXU;
        nix::unistd::mkfifo(&dir.path().join("events"), mode).unwrap();
        for id in ids {
            nix::unistd::mkfifo(&dir.path().join(format!("gate.{id}")), mode).unwrap();
        }
        // Read and write: the FIFO never reports end-of-file between two writers.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("events"))
            .unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(file).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Gates { dir, events }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command that says `start ID`, waits for its gate, says `end ID` and prints
    /// `finished ID`.
    fn script(&self) -> String {
        let d = self.path().display();
        format!(
            r#"echo "start $TASKD_SUB_TASK_ID" >> '{d}/events'
read line < '{d}/gate.'"$TASKD_SUB_TASK_ID"
echo "end $TASKD_SUB_TASK_ID" >> '{d}/events'
echo "finished $TASKD_SUB_TASK_ID""#
        )
    }

    async fn next_event(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("a command event")
            .unwrap()
    }

    async fn open(&self, id: &str) {
        let gate: PathBuf = self.path().join(format!("gate.{id}"));
        let opening = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(gate).unwrap();
            f.write_all(b"go\n").unwrap();
        });
        tokio::time::timeout(PATIENCE, opening)
            .await
            .expect("the command reads its gate")
            .unwrap();
    }
}

fn no_secret_in(log: &str) {
    assert!(!log.contains(SK), "the secret key reached the log:\n{log}");
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_get_env_and_stdin_and_their_outcomes_reach_the_results() {
    let fake = Fake::start().await;
    let script = r#"
case "$TASKD_TARGET" in
  env) printf '  \n%s\n' "$TASKD_TASK_ID" "$TASKD_SUB_TASK_ID" "$TASKD_ATTEMPT" \
         "$TASKD_TASK_TYPE" "$TASKD_TASK_NAME" "$TASKD_TARGET" "$TASKD_PROJECT_ID" \
         "$TASKD_INSTANCE_ID" "app=[$TASKD_APP_ID]" "$TASKD_DOCUMENT" "$TASKD_INPUT" \
         "sk=[$TASKD_SK]" ;;
  stdin) cat ;;
  fail) echo "noise on stdout"; printf '  device offline\n\n' >&2; exit 7 ;;
  silent) exit 3 ;;
  signal) kill -9 $$ ;;
  big) head -c 200000 /dev/zero | tr '\0' 'x'; head -c 200000 /dev/zero | tr '\0' 'y' >&2 ;;
esac"#;
    let mut worker = Worker::spawn(&fake, SK, &["--concurrency", "3"], script);
    let cases = [
        ("s-env", 3, "env"),
        ("s-stdin", 1, "stdin"),
        ("s-fail", 2, "fail"),
        ("s-silent", 1, "silent"),
        ("s-signal", 1, "signal"),
        ("s-big", 1, "big"),
    ];
    fake.push(cases.iter().map(|(id, a, t)| sub_task(id, *a, t)));
    fake.wait_for("six results", |s| s.results.len() == 6).await;

    let env = fake.result_for("s-env").unwrap();
    assert_eq!(env["attempt"], 3);
    assert_eq!(env["status"], "succeeded");
    let output = env["output"].as_str().unwrap();
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines[..9],
        [
            "task-of-s-env",
            "s-env",
            "3",
            TASK_TYPE,
            "fw_2_1",
            "env",
            PROJECT,
            "inst-1",
            "app=[]"
        ]
    );
    let document: Value = serde_json::from_str(lines[9]).unwrap();
    assert_eq!(document, sub_task("s-env", 3, "env")["document"]);
    assert_eq!(lines[10], r#"{"column":"cell"}"#);
    assert_eq!(lines[11], "sk=[]", "the command does not inherit TASKD_SK");
    assert!(
        output.starts_with("task-of-s-env") && output.ends_with("sk=[]"),
        "trimmed"
    );

    let stdin = fake.result_for("s-stdin").unwrap();
    let echoed: Value = serde_json::from_str(stdin["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        echoed,
        sub_task("s-stdin", 1, "stdin"),
        "stdin is the claim entry"
    );

    assert_eq!(
        fake.result_for("s-fail").unwrap(),
        json!({"sub_task_id": "s-fail", "attempt": 2, "status": "failed",
               "error_code": "EXIT_7", "error_msg": "device offline"})
    );
    assert_eq!(
        fake.result_for("s-silent").unwrap(),
        json!({"sub_task_id": "s-silent", "attempt": 1, "status": "failed",
               "error_code": "EXIT_3", "error_msg": "command exited with status 3"})
    );
    let signal = fake.result_for("s-signal").unwrap();
    assert_eq!(signal["error_code"], "SIGNAL_9");
    // Both pipes drained in full (200 kB each, beyond any pipe buffer), the heads kept.
    let big = fake.result_for("s-big").unwrap();
    assert_eq!(big["output"], "x".repeat(4096));

    let claims = fake.read(|s| s.claims.clone());
    for claim in &claims {
        assert_eq!(claim["protocol"], 2);
        assert_eq!(claim["worker_id"], "test-host/pid-1");
        assert_eq!(claim["task_types"], json!(["otherType", TASK_TYPE]));
        assert_eq!(claim["lease_seconds"], 60);
        assert_eq!(claim["wait_seconds"], 20);
        let max = claim["max"].as_u64().unwrap();
        assert!((1..=3).contains(&max), "{claim}");
    }
    assert!(fake.read(|s| s.bad_signatures.is_empty()));

    let status = worker.terminate().await;
    assert!(status.success(), "{status:?}\n{}", worker.log_text());
    no_secret_in(&worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_n_runs_n_commands_at_once_and_never_more() {
    const N: usize = 2;
    let ids = ["c1", "c2", "c3", "c4", "c5"];
    let mut gates = Gates::new(&ids);
    let fake = Fake::start().await;
    let mut worker = Worker::spawn(&fake, SK, &["--concurrency", "2"], &gates.script());
    fake.push(ids.iter().map(|id| sub_task(id, 1, "dev")));

    // Each start and end, in the order they happened. One gate is open at a time: the
    // oldest running command's, once N run or nothing else is left to start.
    let mut running: VecDeque<String> = VecDeque::new();
    let (mut started, mut ended, mut most) = (0, 0, 0);
    let mut opened: Option<String> = None;
    while ended < ids.len() {
        let event = gates.next_event().await;
        match event.split_once(' ') {
            Some(("start", id)) => {
                running.push_back(id.to_string());
                started += 1;
                assert!(
                    running.len() <= N,
                    "{running:?} run at once with --concurrency {N}"
                );
                most = most.max(running.len());
            }
            Some(("end", id)) => {
                running.retain(|r| r != id);
                ended += 1;
                if opened.as_deref() == Some(id) {
                    opened = None;
                }
            }
            _ => panic!("unexpected event {event:?}"),
        }
        if opened.is_none()
            && (running.len() == N || started == ids.len())
            && let Some(oldest) = running.front().cloned()
        {
            gates.open(&oldest).await;
            opened = Some(oldest);
        }
    }
    assert_eq!(most, N, "N commands ran at once");
    fake.wait_for("five results", |s| s.results.len() == ids.len())
        .await;
    for id in ids {
        let result = fake.result_for(id).unwrap();
        assert_eq!(result["status"], "succeeded");
        assert_eq!(result["output"], format!("finished {id}"));
    }
    for claim in fake.read(|s| s.claims.clone()) {
        let max = claim["max"].as_u64().unwrap() as usize;
        assert!((1..=N).contains(&max), "{claim}");
    }
    assert!(worker.terminate().await.success(), "{}", worker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_kills_the_command_and_drops_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let script = format!(
        r#"case "$TASKD_TARGET" in
  slow) echo $$ > '{d}/pid'; exec sleep 60 ;;
  *) echo quick ;;
esac"#
    );
    let fake = Fake::start().await;
    fake.update(|s| s.lose_lease.insert("lost".into()));
    let mut worker = Worker::spawn(
        &fake,
        SK,
        &["--lease-seconds", "5", "--heartbeat-interval-ms", "100"],
        &script,
    );
    fake.push([sub_task("lost", 4, "slow"), sub_task("next", 1, "quick")]);

    // With one slot, "next" runs only once "lost" is gone.
    fake.wait_for("the next sub-task's result", |s| {
        s.results.iter().any(|r| r["sub_task_id"] == "next")
    })
    .await;
    assert_eq!(
        fake.result_for("lost"),
        None,
        "a lost lease reports nothing"
    );
    let beats = fake.read(|s| s.heartbeats.clone());
    let (id, first) = &beats[0];
    assert_eq!(id, "lost");
    assert_eq!(first, &json!({"attempt": 4, "lease_seconds": 5}));
    let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH),
        "the command is killed and reaped"
    );
    worker.wait_log("lease lost").await;
    assert!(worker.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_results_are_retried_after_503_and_refusals_are_dropped() {
    let fake = Fake::start().await;
    fake.update(|s| {
        s.fail_claims = 1;
        s.fail_results = 2;
        s.refuse.insert("refused".into());
    });
    let mut worker = Worker::spawn(&fake, SK, &[], "echo \"out $TASKD_SUB_TASK_ID\"");
    fake.push([sub_task("kept", 1, "dev")]);
    fake.wait_for("the result", |s| !s.results.is_empty()).await;
    assert_eq!(
        fake.result_for("kept").unwrap(),
        json!({"sub_task_id": "kept", "attempt": 1, "status": "succeeded", "output": "out kept"})
    );
    assert_eq!(fake.read(|s| s.result_posts), 3, "two 503s, then delivered");

    // A refused result is logged and dropped; the worker goes on.
    fake.push([sub_task("refused", 1, "dev"), sub_task("after", 1, "dev")]);
    fake.wait_for("both results", |s| s.results.len() == 3)
        .await;
    let posts = fake.read(|s| s.result_posts);
    assert!((4..=5).contains(&posts), "{posts} results posts");
    worker.wait_log("result refused").await;
    let status = worker.terminate().await;
    assert!(status.success());
    let log = worker.log_text();
    assert!(log.contains("claim failed"), "{log}");
    assert!(log.contains("delivering results failed"), "{log}");
    assert_eq!(fake.read(|s| s.results.len()), 3, "nothing delivered twice");
    no_secret_in(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_claiming_lets_the_running_command_finish_and_exits_0() {
    let mut gates = Gates::new(&["running"]);
    let fake = Fake::start().await;
    let mut worker = Worker::spawn(&fake, SK, &[], &gates.script());
    fake.push([sub_task("running", 1, "dev")]);
    assert_eq!(gates.next_event().await, "start running");

    worker.signal(nix::sys::signal::Signal::SIGTERM);
    worker.wait_log("stopping").await;
    // Work that becomes ready now is not claimed any more.
    fake.push([sub_task("too-late", 1, "dev")]);
    gates.open("running").await;
    let status = worker.exit().await;
    assert!(status.success(), "{status:?}\n{}", worker.log_text());
    assert_eq!(
        fake.result_for("running").unwrap()["output"],
        "finished running"
    );
    assert_eq!(fake.read(|s| s.handed_out.clone()), vec!["running"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_fatal_with_a_clear_message() {
    let fake = Fake::start().await;
    let mut worker = Worker::spawn(&fake, "not-the-secret", &[], "true");
    let status = worker.exit().await;
    assert!(!status.success());
    let log = worker.log_text();
    assert!(
        log.contains("taskd refused the claim: HTTP 401 TASKD.000401")
            && log.contains("check the access key, the secret key and the project id"),
        "{log}"
    );
    assert_eq!(fake.read(|s| s.claims.len()), 0);
    assert_eq!(fake.read(|s| s.bad_signatures.len()), 1, "no retry");
    assert!(!log.contains("not-the-secret"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_or_an_https_endpoint_fails_at_start() {
    let fake = Fake::start().await;
    let out = tokio::process::Command::new(BIN)
        .args(["worker", "--endpoint", &fake.endpoint(), "--ak", AK])
        .args(["--project-id", PROJECT, "--task-type", TASK_TYPE])
        .args(["--", "/no/such/command"])
        .env("TASKD_SK", SK)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was not found"), "{err}");

    let out = tokio::process::Command::new(BIN)
        .args(["worker", "--endpoint", "https://taskd:8443", "--ak", AK])
        .args(["--project-id", PROJECT, "--task-type", TASK_TYPE])
        .args(["--", "true"])
        .env("TASKD_SK", SK)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain HTTP"), "{err}");
    assert_eq!(fake.read(|s| s.claims.len()), 0);

    let help = tokio::process::Command::new(BIN)
        .args(["worker", "--help"])
        .env("TASKD_SK", SK)
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("TASKD_SK") && !help.contains(SK), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_kills_the_running_command_and_exits_non_zero() {
    let mut gates = Gates::new(&["stuck"]);
    let fake = Fake::start().await;
    let mut worker = Worker::spawn(&fake, SK, &[], &gates.script());
    fake.push([sub_task("stuck", 1, "dev")]);
    assert_eq!(gates.next_event().await, "start stuck");
    worker.signal(nix::sys::signal::Signal::SIGINT);
    worker.wait_log("stopping:").await;
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let status = worker.exit().await;
    assert!(!status.success(), "{}", worker.log_text());
    assert!(worker.log_text().contains("killing the command"));
    assert_eq!(fake.result_for("stuck"), None);
}
