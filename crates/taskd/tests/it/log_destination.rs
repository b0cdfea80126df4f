//! A log destination that refuses writes (stderr on `/dev/full`, or a pipe nobody reads
//! any more) costs log lines, never answers: every create is answered, and stored once.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{PROJECT, bootstrap_env, exchange, signed_request};
use crate::{Launch, Server};

const CREATES: usize = 60;

#[test]
fn every_create_is_answered_when_stderr_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    let (server, _) = Server::launch(
        dir.path(),
        &env(),
        Launch {
            stderr: Stdio::from(full),
            ..Launch::default()
        },
    );
    creates_are_answered_and_stored_once(&server);
    assert!(server.terminate().success());
}

/// The destination fails only once the server runs (a disk that fills up): stderr is a
/// pipe whose reader goes away after the start.
#[test]
fn every_create_is_answered_when_the_log_pipe_breaks_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _) = Server::launch(
        dir.path(),
        &env(),
        Launch {
            stderr: Stdio::piped(),
            ..Launch::default()
        },
    );
    drop(server.child.stderr.take());
    creates_are_answered_and_stored_once(&server);
    assert!(server.terminate().success());
}

fn env() -> Vec<(&'static str, &'static str)> {
    let mut env = bootstrap_env().to_vec();
    // Every create logs a line at info.
    env.push(("RUST_LOG", "info"));
    env
}

fn creates_are_answered_and_stored_once(server: &Server) {
    let port = server.port;
    let path = format!("/v5/iot/{PROJECT}/batchtasks");

    let mut unanswered = Vec::new();
    for i in 0..CREATES {
        let body = json!({
            "task_name": format!("full_log_{i}"),
            "task_type": "firmwareUpgrade",
            "targets": ["device-1"],
            "document": {"package_ids": ["32822e5744a45ede319d2c50"]},
        });
        let request = signed_request(port, "POST", &path, &body, false);
        match exchange(port, &request, Duration::from_secs(10)) {
            Some((status, reply)) => assert_eq!(status, 201, "create {i}: {reply}"),
            None => unanswered.push(i),
        }
    }
    assert!(
        unanswered.is_empty(),
        "{} of {CREATES} creates got no answer: {unanswered:?}",
        unanswered.len()
    );

    // Every create is stored exactly once.
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut marker: Option<String> = None;
    loop {
        let page_path = match &marker {
            None => format!("{path}?limit=50"),
            Some(m) => format!("{path}?limit=50&marker={m}"),
        };
        let (status, body) = exchange(
            port,
            &list_request(port, &page_path),
            Duration::from_secs(10),
        )
        .expect("the listing is answered");
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let tasks = page["batchtasks"].as_array().unwrap();
        for t in tasks {
            *names
                .entry(t["task_name"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        if tasks.len() < 50 {
            break;
        }
        marker = page["page"]["marker"].as_str().map(str::to_string);
    }
    assert_eq!(names.len(), CREATES, "{names:?}");
    assert!(names.values().all(|&n| n == 1), "{names:?}");
}

/// A signed GET whose query the signer sorts as the SDK does.
fn list_request(port: u16, path_and_query: &str) -> Vec<u8> {
    let (path, query) = path_and_query.split_once('?').unwrap();
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    crate::client::signed_request_with_query(port, "GET", path, &pairs, &Value::Null, false)
}
