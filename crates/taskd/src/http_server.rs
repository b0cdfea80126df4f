//! The HTTP server: accepts connections and serves the API on each, with what
//! `axum::serve` has not got: a header-read timeout, an idle timeout, a cap on open
//! connections, and room made for new connections when the cap or the descriptors run
//! out (nginx's way: a connection with no request in progress is the cheapest to lose).
//!
//! The timeouts are kept here, not by hyper: hyper 1's `header_read_timeout` starts as soon
//! as it waits for a request head, keep-alive waits included, so it cannot give an idle
//! keep-alive connection longer than a slow request head. Each connection instead has a
//! watchdog over what its socket and its requests report (`Activity`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Descriptors kept back from client connections: the database (SQLite: a writer and four
/// readers, three files each; PostgreSQL: 16 sockets), stdio, the runtime's own (epoll,
/// eventfd, the signal pipe), the listener, and headroom.
pub const RESERVED_FDS: u64 = 64;
/// The default connection cap never goes above this, however many descriptors there are:
/// each idle connection still costs its buffers.
pub const MAX_CONNECTIONS_CAP: usize = 10_000;
/// How long the acceptor waits before retrying when descriptors ran out and no
/// connection could be closed (something else holds them).
const FD_RETRY: Duration = Duration::from_millis(250);
/// Warnings about connection pressure are repeated at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection's start, or the first byte of a later request, until its
    /// headers are complete.
    pub header_read_timeout: Duration,
    /// An idle keep-alive connection, or one whose client stopped reading a response.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the default soft limit is often
/// 1024) and returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read RLIMIT_NOFILE; assuming 1024");
            return 1024;
        }
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(e) => {
            tracing::warn!(error = %e, soft, hard, "cannot raise RLIMIT_NOFILE");
            soft
        }
    }
}

/// The connection cap when none is given: the descriptors left after [`RESERVED_FDS`].
pub fn default_max_connections(fd_limit: u64) -> usize {
    let free = fd_limit.saturating_sub(RESERVED_FDS);
    usize::try_from(free)
        .unwrap_or(usize::MAX)
        .clamp(16, MAX_CONNECTIONS_CAP)
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, closes the
/// connections that have no request in progress, lets the others finish theirs, and
/// returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // The SDKs speak HTTP/1.1, and taskd never served HTTP/2.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    let builder = Arc::new(builder);
    let table = Arc::new(Table::new(limits.max_connections));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            stream = next_connection(&listener, &table) => stream,
        };
        let conn = Arc::new(Conn::new(table.freed.clone()));
        let registered = Registered::new(table.clone(), conn.clone());
        let (app, builder, stop) = (app.clone(), builder.clone(), stop.clone());
        tracker.spawn(async move {
            // Leaves the table when the task ends, even by a panic.
            let _registered = registered;
            serve_connection(stream, app, &builder, &conn, limits, &stop).await;
        });
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    tracker.wait().await;
}

/// The next connection to serve, once there is room for it. Never spins: when the cap is
/// reached or descriptors run out it closes the connection that has waited longest for a
/// request, or waits for one to finish (holding the newcomer, unserved, meanwhile).
async fn next_connection(listener: &TcpListener, table: &Table) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                table.make_room().await;
                return stream;
            }
            Err(e) if fd_exhausted(&e) => {
                table.pressure("descriptors ran out", &e.to_string());
                if !table.reclaim_one().await {
                    let mut freed = table.freed.subscribe();
                    let _ = tokio::time::timeout(FD_RETRY, freed.changed()).await;
                }
            }
            // The peer gave up before we took it: nothing to do.
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(FD_RETRY).await;
            }
        }
    }
}

fn fd_exhausted(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    conn: &Arc<Conn>,
    limits: Limits,
    stop: &CancellationToken,
) {
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        conn: conn.clone(),
    });
    let service = TrackedService {
        app,
        conn: conn.clone(),
    };
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            reason = conn.watchdog(limits) => {
                tracing::debug!(reason, "connection timed out");
                return;
            }
            () = conn.reclaim.cancelled() => {
                tracing::debug!("connection closed to make room");
                return;
            }
            () = stop.cancelled(), if !stopping => {
                if conn.activity().in_flight == 0 {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
}

/// The open connections.
struct Table {
    max: usize,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Bumped when a connection closes or its last request finishes: room may be made.
    freed: Arc<watch::Sender<u64>>,
    warned: Mutex<Option<Instant>>,
}

impl Table {
    fn new(max: usize) -> Table {
        Table {
            max,
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            freed: Arc::new(watch::Sender::new(0)),
            warned: Mutex::new(None),
        }
    }

    fn register(&self, conn: Arc<Conn>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(id, conn);
        id
    }

    fn unregister(&self, id: u64) {
        lock(&self.open).remove(&id);
        self.freed.send_modify(|n| *n += 1);
    }

    /// Returns once fewer than `max` connections are open.
    async fn make_room(&self) {
        let mut freed = self.freed.subscribe();
        loop {
            freed.borrow_and_update();
            let victim = {
                let open = lock(&self.open);
                if open.len() < self.max {
                    return;
                }
                longest_waiting(&open)
            };
            self.pressure("connection limit reached", &self.max.to_string());
            if let Reclaim::Now(victim) = victim {
                victim.reclaim.cancel();
            }
            // The victim closes, or a request finishes somewhere and makes one.
            let _ = freed.changed().await;
        }
    }

    /// Closes the connection that has waited longest for a request and waits until it is
    /// gone; false if every connection has a request in progress.
    async fn reclaim_one(&self) -> bool {
        let mut freed = self.freed.subscribe();
        freed.borrow_and_update();
        match longest_waiting(&lock(&self.open)) {
            Reclaim::Now(victim) => victim.reclaim.cancel(),
            Reclaim::Pending => {}
            Reclaim::Nothing => return false,
        }
        let _ = freed.changed().await;
        true
    }

    fn pressure(&self, what: &str, detail: &str) {
        let mut warned = lock(&self.warned);
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *warned = Some(Instant::now());
            let open = lock(&self.open).len();
            tracing::warn!(
                open,
                detail,
                "{what}: closing the connections that waited longest for a request"
            );
        }
    }
}

enum Reclaim {
    /// Close this one.
    Now(Arc<Conn>),
    /// One is already closing: wait for it rather than close another.
    Pending,
    /// Every connection has a request in progress.
    Nothing,
}

/// A connection's entry in the [`Table`], removed when dropped.
struct Registered {
    table: Arc<Table>,
    id: u64,
}

impl Registered {
    fn new(table: Arc<Table>, conn: Arc<Conn>) -> Registered {
        let id = table.register(conn);
        Registered { table, id }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table.unregister(self.id);
    }
}

/// The connection with no request in progress that has waited longest for one.
fn longest_waiting(open: &HashMap<u64, Arc<Conn>>) -> Reclaim {
    if open.values().any(|c| c.reclaim.is_cancelled()) {
        return Reclaim::Pending;
    }
    open.values()
        .filter_map(|c| c.activity().waiting_since().map(|since| (since, c)))
        .min_by_key(|(since, _)| *since)
        .map_or(Reclaim::Nothing, |(_, c)| Reclaim::Now(c.clone()))
}

/// One connection, as its socket and its requests report it.
struct Conn {
    activity: Mutex<Activity>,
    /// Wakes the watchdog when a deadline may have come nearer or appeared.
    changed: Notify,
    /// Closes the connection at once, to make room for another.
    reclaim: CancellationToken,
    freed: Arc<watch::Sender<u64>>,
}

#[derive(Debug)]
struct Activity {
    /// Requests whose headers have arrived and whose response is not yet written.
    in_flight: usize,
    /// When the connection started waiting for its next request (the end of the last
    /// response).
    idle_since: Instant,
    /// When the request head now being read began: the connection's start for the first
    /// request, the first byte after `idle_since` for later ones.
    head_started: Option<Instant>,
    /// Since when a write has waited for the client to read.
    write_blocked_since: Option<Instant>,
}

impl Activity {
    fn deadline(&self, limits: Limits) -> Option<(Instant, &'static str)> {
        if self.in_flight > 0 {
            // The request timeout bounds the handler; only a client that stops reading
            // its answer could hold the connection on.
            return self
                .write_blocked_since
                .map(|t| (t + limits.idle_timeout, "the client stopped reading"));
        }
        Some(match self.head_started {
            Some(t) => (
                t + limits.header_read_timeout,
                "request headers not complete in time",
            ),
            None => (
                self.idle_since + limits.idle_timeout,
                "idle keep-alive connection",
            ),
        })
    }

    /// Since when the connection has owed a request, if it has none in progress.
    fn waiting_since(&self) -> Option<Instant> {
        (self.in_flight == 0).then(|| self.head_started.unwrap_or(self.idle_since))
    }
}

impl Conn {
    fn new(freed: Arc<watch::Sender<u64>>) -> Conn {
        let now = Instant::now();
        Conn {
            activity: Mutex::new(Activity {
                in_flight: 0,
                idle_since: now,
                head_started: Some(now),
                write_blocked_since: None,
            }),
            changed: Notify::new(),
            reclaim: CancellationToken::new(),
            freed,
        }
    }

    fn activity(&self) -> MutexGuard<'_, Activity> {
        lock(&self.activity)
    }

    /// Resolves with the reason once the connection is past its deadline.
    async fn watchdog(&self, limits: Limits) -> &'static str {
        loop {
            // `notify_one` keeps a permit, so a change between reading the deadline and
            // waiting is not lost.
            let changed = self.changed.notified();
            let deadline = self.activity().deadline(limits);
            let Some((at, _)) = deadline else {
                changed.await;
                continue;
            };
            tokio::select! {
                () = tokio::time::sleep_until(at) => {
                    if let Some((at, reason)) = self.activity().deadline(limits)
                        && at <= Instant::now()
                    {
                        return reason;
                    }
                }
                () = changed => {}
            }
        }
    }

    fn bytes_read(&self) {
        let mut a = self.activity();
        if a.in_flight == 0 && a.head_started.is_none() {
            a.head_started = Some(Instant::now());
            drop(a);
            self.changed.notify_one();
        }
    }

    fn write_blocked(&self, blocked: bool) {
        let mut a = self.activity();
        match (blocked, a.write_blocked_since) {
            (true, None) => {
                a.write_blocked_since = Some(Instant::now());
                drop(a);
                self.changed.notify_one();
            }
            (false, Some(_)) => a.write_blocked_since = None,
            _ => {}
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut a = self.activity();
        a.in_flight += 1;
        a.head_started = None;
        InFlight(self.clone())
    }
}

/// Held from a request's headers until its response is written (hyper drops the body).
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        let mut a = conn.activity();
        a.in_flight -= 1;
        if a.in_flight == 0 {
            a.idle_since = Instant::now();
            a.head_started = None;
            drop(a);
            conn.changed.notify_one();
            conn.freed.send_modify(|n| *n += 1);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent under every lock here (plain field updates), so a panic
    // elsewhere while holding one must not take the server down with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The socket, reporting reads and blocked writes to its [`Conn`].
struct TrackedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.bytes_read();
        }
        result
    }
}

impl TrackedIo {
    fn report_write(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Pending => self.conn.write_blocked(true),
            Poll::Ready(Ok(n)) if *n > 0 => self.conn.write_blocked(false),
            Poll::Ready(_) => {}
        }
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.report_write(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.report_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The API, marking each request in flight on its connection until its response is
/// written.
#[derive(Clone)]
struct TrackedService {
    app: Router,
    conn: Arc<Conn>,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for TrackedService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: Request<Incoming>) -> ServiceFuture {
        let in_flight = self.conn.request_started();
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request.map(Body::new)).await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body that keeps its request in flight until hyper is done with it.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
