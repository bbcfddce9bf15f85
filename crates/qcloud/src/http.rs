//! The HTTP server loop: hyper connections with a header-read timeout, an idle keep-alive timeout
//! and a limit on open connections, none of which `axum::serve` has. (The request-body timeout and
//! the whole-request timeout are tower layers of `qcloud-api`.)
//!
//! Each connection has a watchdog that knows which phase it is in:
//! - **waiting for a request head** (from accept, or from the first byte of a later request): cut
//!   after `header_read_timeout`, so a client that sends half a request line cannot hold it;
//! - **idle** (keep-alive, no request in flight, nothing received since the last response): cut
//!   after `idle_timeout`;
//! - **busy** (a request in flight, until its response body has been written): never cut here; the
//!   request timeout and the body timeout bound it.
//!
//! A connection cut by its watchdog has no request in flight, so nothing a client was told about is
//! lost. At `max_connections` the server stops accepting (new connections wait in the kernel's
//! backlog) until one closes.

use axum::body::Body;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Connection limits of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpLimits {
    /// Longest wait for a complete request head, from accept or from a request's first byte.
    pub header_read_timeout: Duration,
    /// Longest a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` completes, then let open connections finish their
/// requests (graceful) and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors and the like: wait rather than spin.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, stop) = (app.clone(), stop.clone());
        connections.spawn(async move {
            serve_connection(stream, app, limits, stop).await;
            debug!(%peer, "connection closed");
            drop(slot);
        });
    }
    stop.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(stream: TcpStream, app: Router, limits: HttpLimits, stop: CancellationToken) {
    let watch = Arc::new(Watch::new());
    let io = TokioIo::new(Watched { inner: stream, watch: watch.clone() });
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::begin(watch.clone());
            let app = app.clone();
            async move {
                let res = app.oneshot(req.map(Body::new)).await;
                res.map(|r| r.map(|body| Body::new(Guarded { inner: body, _busy: busy })))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timer backs the watchdog up (it also runs between keep-alive requests).
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout.max(limits.idle_timeout));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let expired = watch.expired(limits);
    tokio::pin!(expired);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            phase = &mut expired => {
                debug!(phase, "connection cut by its watchdog");
                return;
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection is doing, for its watchdog.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for (the rest of) a request head since this instant.
    Head(Instant),
    /// Keep-alive, nothing received since the last response, since this instant.
    Idle(Instant),
    /// This many requests in flight.
    Busy(usize),
}

struct Watch {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Watch {
    fn new() -> Watch {
        Watch { phase: Mutex::new(Phase::Head(Instant::now())), changed: Notify::new() }
    }

    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let next = f(*phase);
        if next != *phase {
            let notify = !matches!((*phase, next), (Phase::Busy(_), Phase::Busy(_)));
            *phase = next;
            if notify {
                self.changed.notify_one();
            }
        }
    }

    /// Bytes arrived: an idle connection starts reading a request head.
    fn received(&self) {
        self.update(|p| match p {
            Phase::Idle(_) => Phase::Head(Instant::now()),
            p => p,
        });
    }

    /// When the current phase runs out, and its name.
    fn deadline(&self, limits: HttpLimits) -> Option<(Instant, &'static str)> {
        match *self.phase.lock().unwrap_or_else(|e| e.into_inner()) {
            Phase::Head(since) => Some((since + limits.header_read_timeout, "header_read_timeout")),
            Phase::Idle(since) => Some((since + limits.idle_timeout, "idle_timeout")),
            Phase::Busy(_) => None,
        }
    }

    /// Completes when the connection has overstayed its phase.
    async fn expired(&self, limits: HttpLimits) -> &'static str {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.deadline(limits) {
                None => changed.await,
                Some((at, name)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            if self.deadline(limits).is_some_and(|(now_at, _)| now_at <= Instant::now()) {
                                return name;
                            }
                        }
                        _ = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in flight, from its head until its response body is dropped (written or abandoned).
struct Busy(Arc<Watch>);

impl Busy {
    fn begin(watch: Arc<Watch>) -> Busy {
        watch.update(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
        Busy(watch)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct Guarded {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling the watchdog when bytes arrive.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.received();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HttpLimits = HttpLimits {
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_millis(300),
        max_connections: 8,
    };

    #[test]
    fn phases_move_head_busy_idle_head() {
        let w = Arc::new(Watch::new());
        assert_eq!(w.deadline(LIMITS).map(|d| d.1), Some("header_read_timeout"));
        let busy = Busy::begin(w.clone());
        let second = Busy::begin(w.clone());
        assert_eq!(w.deadline(LIMITS), None);
        drop(busy);
        assert_eq!(w.deadline(LIMITS), None, "one request is still in flight");
        let before = Instant::now();
        drop(second);
        let (at, name) = w.deadline(LIMITS).unwrap();
        assert_eq!(name, "idle_timeout");
        assert!(at >= before + LIMITS.idle_timeout && at <= Instant::now() + LIMITS.idle_timeout);
        w.received();
        assert_eq!(w.deadline(LIMITS).map(|d| d.1), Some("header_read_timeout"));
        w.received();
        assert_eq!(w.deadline(LIMITS).map(|d| d.1), Some("header_read_timeout"), "more bytes do not restart it");
    }

    #[tokio::test]
    async fn expires_only_when_the_phase_outlasts_its_limit() {
        let w = Arc::new(Watch::new());
        let busy = Busy::begin(w.clone());
        let expired = {
            let w = w.clone();
            tokio::spawn(async move { w.expired(LIMITS).await })
        };
        // Busy for longer than the idle limit: not cut.
        tokio::time::sleep(LIMITS.idle_timeout * 2).await;
        assert!(!expired.is_finished());
        drop(busy);
        let name = tokio::time::timeout(Duration::from_secs(10), expired).await.expect("cut once idle").unwrap();
        assert_eq!(name, "idle_timeout");
    }
}
