//! Connections that send nothing, half a request, or nothing more after a response are
//! closed on time; the connection cap holds; and health checks are answered while
//! hundreds of half-sent requests hold the server's descriptors.
//!
//! The settings go in through the environment (`TASKD_*`), so these tests also run
//! against a build that does not know them, and fail there.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{
    PROJECT, bootstrap_env, connect, exchange, get_request, is_closed, read_response,
    server_connections, signed_request, time_to_close, wait_until,
};
use crate::{Launch, Server};

/// A request cut off before the blank line that ends its headers.
const HALF_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n";

fn half_sent(port: u16) -> TcpStream {
    let mut s = connect(port);
    s.write_all(HALF_REQUEST).unwrap();
    s
}

/// How long a health check takes to be answered on a new connection.
fn healthz(port: u16, patience: Duration) -> Option<Duration> {
    let start = Instant::now();
    let (status, _) = exchange(port, &get_request("/healthz", false), patience)?;
    assert_eq!(status, 200);
    Some(start.elapsed())
}

#[test]
fn silent_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = Server::start(
        dir.path(),
        &[
            ("TASKD_HEADER_READ_TIMEOUT_SECS", "2"),
            ("TASKD_IDLE_TIMEOUT_SECS", "60"),
        ],
    );
    let opened = Instant::now();
    let mut silent = connect(server.port);
    let mut half = half_sent(server.port);
    // A client that keeps sending a byte now and then gets no more time than the others.
    let mut trickle = connect(server.port);
    for &b in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" {
        if is_closed(&mut trickle) {
            break;
        }
        let _ = trickle.write_all(&[b]);
        thread::sleep(Duration::from_millis(250));
    }
    for (what, stream) in [
        ("silent", &mut silent),
        ("half-sent", &mut half),
        ("trickling", &mut trickle),
    ] {
        time_to_close(stream, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("the {what} connection is still open"));
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(1_500) && after < Duration::from_secs(5),
            "the {what} connection was closed {after:?} after it opened; the timeout is 2 s"
        );
    }
    // The server itself is fine.
    assert!(healthz(server.port, Duration::from_secs(5)).is_some());
    assert!(server.terminate().success());
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = Server::start(
        dir.path(),
        &[
            ("TASKD_HEADER_READ_TIMEOUT_SECS", "30"),
            ("TASKD_IDLE_TIMEOUT_SECS", "2"),
        ],
    );
    let mut s = connect(server.port);
    for _ in 0..2 {
        s.write_all(&get_request("/healthz", true)).unwrap();
        let (status, _) = read_response(&mut s, Duration::from_secs(5)).expect("an answer");
        assert_eq!(status, 200, "keep-alive serves request after request");
    }
    let closed = time_to_close(&mut s, Duration::from_secs(15))
        .expect("the idle keep-alive connection is closed");
    assert!(
        closed >= Duration::from_millis(1_500) && closed < Duration::from_secs(10),
        "closed {closed:?} after the last response; the idle timeout is 2 s (the header timeout, 30 s, does not apply)"
    );
    assert!(server.terminate().success());
}

/// 300 half-sent requests against a server with 256 descriptors and a 30 s header
/// timeout: the health check must not wait for any timeout.
fn health_under_descriptor_exhaustion(extra_env: &[(&str, &str)]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("TASKD_HEADER_READ_TIMEOUT_SECS", "30"),
        ("TASKD_IDLE_TIMEOUT_SECS", "30"),
    ];
    env.extend_from_slice(extra_env);
    let (server, _) = Server::launch(
        dir.path(),
        &env,
        Launch {
            nofile: Some(256),
            ..Launch::default()
        },
    );
    let attackers: Vec<TcpStream> = (0..300).map(|_| half_sent(server.port)).collect();
    let took = healthz(server.port, Duration::from_secs(5))
        .expect("/healthz answered within 5 s while 300 half-sent requests were open");
    // Still serving, and the attack did not cost the server its life.
    assert!(healthz(server.port, Duration::from_secs(5)).is_some());
    drop(attackers);
    assert!(server.terminate().success());
    took
}

#[test]
fn health_checks_are_answered_while_half_sent_requests_hold_the_descriptors() {
    // The default cap (the descriptor limit less a reserve) is reached first.
    let at_cap = health_under_descriptor_exhaustion(&[]);
    // A cap above what the descriptors allow: accept itself fails (EMFILE).
    let emfile = health_under_descriptor_exhaustion(&[("TASKD_MAX_CONNECTIONS", "1000")]);
    eprintln!("/healthz under 300 half-sent requests: {at_cap:?} at the cap, {emfile:?} on EMFILE");
}

#[test]
fn the_connection_cap_holds_and_spares_requests_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = bootstrap_env().to_vec();
    env.extend([
        ("TASKD_MAX_CONNECTIONS", "4"),
        ("TASKD_HEADER_READ_TIMEOUT_SECS", "30"),
        ("TASKD_IDLE_TIMEOUT_SECS", "30"),
    ]);
    let (server, _) = Server::start(dir.path(), &env);
    let (port, pid) = (server.port, server.pid());

    // Two long polls in progress: nothing is ready, so each waits 3 s for work.
    let claim = json!({"protocol": 2, "worker_id": "w-1", "task_types": ["firmwareUpgrade"], "max": 1,
                       "wait_seconds": 3});
    let polls: Vec<_> = (0..2)
        .map(|_| {
            let request = signed_request(
                port,
                "POST",
                &format!("/taskd/v1/{PROJECT}/claims"),
                &claim,
                false,
            );
            let mut s = connect(port);
            s.write_all(&request).unwrap();
            s
        })
        .collect();
    // Taken and read to the end (nothing left unread): both requests are in progress.
    wait_until(
        "the server to take both long polls",
        Duration::from_secs(5),
        || {
            let open = server_connections(pid, port);
            open.len() == 2 && open.iter().all(|&unread| unread == 0)
        },
    );

    let mut idle: Vec<TcpStream> = (0..10).map(|_| half_sent(port)).collect();
    // Each newcomer over the cap closes the half-sent request that waited longest.
    wait_until(
        "the first 8 half-sent requests to be closed",
        Duration::from_secs(5),
        || idle[..8].iter_mut().all(is_closed),
    );
    assert!(
        idle[8..].iter_mut().all(|s| !is_closed(s)),
        "the newest stay"
    );
    assert_eq!(server_connections(pid, port).len(), 4);

    // A health check still gets in, and the long polls are answered in full.
    assert!(healthz(port, Duration::from_secs(5)).is_some());
    assert!(server_connections(pid, port).len() <= 4);
    for mut poll in polls {
        let (status, body) = read_response(&mut poll, Duration::from_secs(10))
            .expect("the long poll in progress was answered");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"sub_tasks\":[]"), "{body}");
    }
    assert!(server.terminate().success());
}
