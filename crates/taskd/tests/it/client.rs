//! A plain HTTP/1.1 client over `std::net`, byte for byte under the test's control (half
//! requests, keep-alive), signing as the SDKs do with the repository's signer.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use taskd_core::{Clock, SystemClock};
use taskd_signature::{SigningKey, SigningRequest, format_sdk_date, sign};

pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";
pub const AK: &str = "CONNTESTAKAAAAAAAAAA";
pub const SK: &str = "conn-test-secret-0123456789abcdefghijkl";

/// The environment that makes the server hold the credential above.
pub fn bootstrap_env() -> [(&'static str, &'static str); 3] {
    [
        ("TASKD_BOOTSTRAP_PROJECT_ID", PROJECT),
        ("TASKD_BOOTSTRAP_AK", AK),
        ("TASKD_BOOTSTRAP_SK", SK),
    ]
}

pub fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).unwrap()
}

/// A complete signed request, as bytes to write.
pub fn signed_request(
    port: u16,
    method: &str,
    path: &str,
    body: &serde_json::Value,
    keep_alive: bool,
) -> Vec<u8> {
    signed_request_with_query(port, method, path, &[], body, keep_alive)
}

/// [`signed_request`] with a query: decoded pairs, sent as the signer canonicalised them.
pub fn signed_request_with_query(
    port: u16,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: &serde_json::Value,
    keep_alive: bool,
) -> Vec<u8> {
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let host = format!("127.0.0.1:{port}");
    let date = format_sdk_date(SystemClock.now().unix_secs());
    let headers = [
        ("Content-Type", "application/json"),
        ("Host", host.as_str()),
        ("X-Sdk-Date", date.as_str()),
    ];
    let signed = sign(
        &SigningRequest {
            method,
            path,
            query,
            headers: &headers,
            body: &body,
        },
        &SigningKey::Plain {
            access_key: AK,
            secret_key: SK,
        },
    );
    let target = if signed.query_string.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", signed.query_string)
    };
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    for (name, value) in headers {
        out += &format!("{name}: {value}\r\n");
    }
    out += &format!(
        "Authorization: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        signed.authorization,
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

pub fn get_request(path: &str, keep_alive: bool) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes()
}

/// Reads one response (`Content-Length` framed, as the server frames them): status and
/// body, or `None` if the connection closed or `patience` passed first.
pub fn read_response(stream: &mut TcpStream, patience: Duration) -> Option<(u16, String)> {
    let deadline = Instant::now() + patience;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_some(stream, &mut buf, &mut chunk, deadline)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        read_some(stream, &mut buf, &mut chunk, deadline)?;
    }
    Some((
        status,
        String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string(),
    ))
}

fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    deadline: Instant,
) -> Option<()> {
    let left = deadline.checked_duration_since(Instant::now())?;
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .ok()?;
    match stream.read(chunk) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// One request on a new connection: status and body, or `None` without an answer.
pub fn exchange(port: u16, request: &[u8], patience: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(request).ok()?;
    read_response(&mut stream, patience)
}

/// Waits until the server closes `stream` (EOF or reset) and returns how long that
/// took, or `None` if it is still open after `patience`. Anything the server sends is
/// read and dropped.
pub fn time_to_close(stream: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 4096];
    loop {
        let left = patience.checked_sub(start.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// Whether the server has closed `stream` by now (without waiting).
pub fn is_closed(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// Client connections the server process holds open on `port` right now: its socket
/// descriptors (`/proc/PID/fd`) that are TCP connections on that local port
/// (`/proc/net/tcp`), the listener aside. Each with the bytes it has received that the
/// server has not read yet.
pub fn server_connections(pid: u32, port: u16) -> Vec<u64> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let port_hex = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let mine = fields.len() > 9
                && fields[1].ends_with(&port_hex)
                && fields[3] != "0A" // LISTEN
                && inodes.contains(fields[9]);
            let (_, unread) = fields.get(4)?.split_once(':')?;
            mine.then(|| u64::from_str_radix(unread, 16).unwrap())
        })
        .collect()
}

/// Polls `done` until it holds, or panics with `what` after `patience`.
pub fn wait_until(what: &str, patience: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
