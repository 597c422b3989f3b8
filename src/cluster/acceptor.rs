//! herd's own acceptor for inbound connections, in place of ractor_cluster's listener.
//!
//! ractor_cluster 0.16.5's listener accepts in a loop with nothing to guard the time before
//! authentication: it runs each inbound TLS handshake inline with no timeout (one silent
//! connection stops a TLS node from accepting anyone), applies the full inbound frame limit
//! (set by herd to twice the message limit) to a peer that has not authenticated (20
//! connections announcing 8 MB frames pinned 176 MB), never closes a connection that does
//! not finish its handshake, and has no cap on them. herd therefore accepts connections
//! itself and hands each stream to the NodeServer with `ConnectionOpenedExternal`. Until the
//! session authenticates, the stream
//!
//! * must finish the TLS handshake within [`HANDSHAKE_TIMEOUT`], in its own task;
//! * may announce frames of at most [`PREAUTH_FRAME_LIMIT`] bytes in its handshake (ractor
//!   allocates a frame's announced length before reading it) and at most 1 MiB after it: a
//!   larger announcement closes it;
//! * is not read beyond [`PREAUTH_MAX_FRAMES`] frames (ractor logs each non-handshake frame
//!   of an unauthenticated peer) until the authentication is seen;
//! * must authenticate within [`HANDSHAKE_TIMEOUT`] of being accepted, or it is closed;
//! * is one of at most [`MAX_UNAUTHENTICATED`]: beyond that, new connections are closed at
//!   once (counted, logged at most once a second).
//!
//! After authentication the stream is passed through untouched.
//!
//! The NodeServer still starts its own listener (it cannot be configured away); herd unlinks
//! it from the NodeServer (so that it is not respawned) and kills it, which frees the port,
//! then binds the same address itself.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, NodeServerMessage};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

use super::lock;
use super::ratelimit::RateLimited;

/// How long an inbound connection may take from accept to authentication (TLS handshake
/// included).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest frame an unauthenticated peer may announce in its first
/// [`HANDSHAKE_FRAMES`] frames: ractor's handshake messages (name, status, challenge reply)
/// are a few hundred bytes.
pub(crate) const PREAUTH_FRAME_LIMIT: u64 = 64 * 1024;
/// How many frames a dialing peer sends before it can be authenticated: its name, maybe a
/// status, and its challenge reply.
const HANDSHAKE_FRAMES: u64 = 3;
/// After this many frames without authentication the reader stops reading until herd sees
/// the session authenticate (or the deadline closes it): ractor logs a warning for every
/// non-handshake frame an unauthenticated peer sends (10,000 frames, 10,000 lines).
const PREAUTH_MAX_FRAMES: u64 = 16;
/// The largest frame announced after the handshake frames while herd has not yet seen the
/// session's authentication: a peer the server just accepted sends its actor list and pg
/// groups at once, which can race herd's bookkeeping. Bounds memory all the same.
const POSTHANDSHAKE_FRAME_LIMIT: u64 = 1024 * 1024;
/// Connections accepted but not yet authenticated, at most.
pub(crate) const MAX_UNAUTHENTICATED: usize = 64;

/// One accepted connection's state, shared by its stream and the node's event loop.
#[derive(Debug)]
struct Guard {
    authenticated: AtomicBool,
    /// Released (the count of unauthenticated connections decremented) once.
    released: AtomicBool,
    pending: Arc<AtomicUsize>,
    /// The reader parked at [`PREAUTH_MAX_FRAMES`], woken when authentication is seen.
    parked: Mutex<Option<Waker>>,
}

impl Guard {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.release();
    }
}

/// Counters of the acceptor.
#[derive(Debug, Default)]
pub(crate) struct AcceptorCounters {
    /// Connections closed before authenticating by the acceptor's rules (timeout, oversized
    /// frame announced, too many pending, failed TLS handshake).
    pub(crate) closed_preauth: AtomicU64,
}

/// The acceptor's shared state: the guards of connections by peer label.
#[derive(Debug, Default)]
pub(crate) struct Acceptor {
    guards: Mutex<HashMap<String, Arc<Guard>>>,
    pending: Arc<AtomicUsize>,
    pub(crate) counters: AcceptorCounters,
}

impl Acceptor {
    /// The session whose peer address is `label` authenticated: lift its limits.
    pub(crate) fn authenticated(&self, label: &str) {
        if let Some(g) = lock(&self.guards).get(label) {
            g.authenticated.store(true, Ordering::Release);
            g.release();
            if let Some(w) = lock(&g.parked).take() {
                w.wake();
            }
        }
    }

    /// The session whose peer address is `label` closed.
    pub(crate) fn closed(&self, label: &str) {
        if let Some(g) = lock(&self.guards).remove(label) {
            g.release();
        }
    }

    /// Connections accepted and not yet authenticated.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// Frees the port ractor's listener holds: unlinks the listener from the NodeServer (so that
/// the server does not respawn it) and kills it.
///
/// Called right after the server started, when the listener is its only child. A connection
/// ractor's listener accepted in that instant would be a session child and be killed too; its
/// peer redials, which is harmless.
pub(crate) async fn park_ractor_listener(server: &ActorRef<NodeServerMessage>) {
    for child in server.get_children() {
        child.unlink(server.get_cell());
        child.kill();
        let _ = child.wait(Some(Duration::from_secs(2))).await;
    }
}

/// Binds `addr`, retrying for a moment while the killed ractor listener lets go of it.
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%addr, error = %e, "port not free yet");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Accepts connections forever (the caller aborts the task).
pub(crate) async fn run(
    listener: TcpListener,
    server: ActorRef<NodeServerMessage>,
    tls: Option<TlsAcceptor>,
    acceptor: Arc<Acceptor>,
) {
    let refused_log = Arc::new(RateLimited::new(Duration::from_secs(1)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let pending = acceptor.pending.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = Arc::new(Guard {
            authenticated: AtomicBool::new(false),
            released: AtomicBool::new(false),
            pending: Arc::clone(&acceptor.pending),
            parked: Mutex::new(None),
        });
        if pending > MAX_UNAUTHENTICATED {
            acceptor
                .counters
                .closed_preauth
                .fetch_add(1, Ordering::Relaxed);
            if let Some(held) = refused_log.allow(Instant::now()) {
                tracing::warn!(%peer, held_back = held, "too many connections waiting to authenticate; closing a new one");
            }
            drop(guard);
            continue;
        }
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let label = peer.to_string();
        let (server, tls, acceptor, log) = (
            server.clone(),
            tls.clone(),
            Arc::clone(&acceptor),
            Arc::clone(&refused_log),
        );
        // Each handshake in its own task: a silent peer delays nobody else.
        tokio::spawn(async move {
            let io: Box<dyn Duplex> = match tls {
                None => Box::new(stream),
                Some(tls) => match tokio::time::timeout_at(deadline, tls.accept(stream)).await {
                    Ok(Ok(s)) => Box::new(s),
                    failed => {
                        acceptor
                            .counters
                            .closed_preauth
                            .fetch_add(1, Ordering::Relaxed);
                        if let Some(held) = log.allow(Instant::now()) {
                            let why = match failed {
                                Ok(Err(e)) => e.to_string(),
                                _ => "timed out".to_string(),
                            };
                            tracing::warn!(%peer, held_back = held, error = %why, "inbound TLS handshake failed");
                        }
                        return;
                    }
                },
            };
            lock(&acceptor.guards).insert(label.clone(), Arc::clone(&guard));
            let stream = Guarded {
                io,
                guard,
                label,
                deadline,
                acceptor: Arc::clone(&acceptor),
            };
            let _ = server.cast(NodeServerMessage::ConnectionOpenedExternal {
                stream: Box::new(stream),
                is_server: true,
            });
        });
    }
}

/// A bidirectional byte stream (plain TCP or TLS).
trait Duplex: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Duplex for T {}

/// An accepted stream with its guard, handed to ractor.
struct Guarded {
    io: Box<dyn Duplex>,
    guard: Arc<Guard>,
    label: String,
    deadline: Instant,
    acceptor: Arc<Acceptor>,
}

impl ClusterBidiStream for Guarded {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (r, w) = tokio::io::split(self.io);
        let read = GuardedRead {
            inner: r,
            guard: self.guard,
            sleep: Box::pin(tokio::time::sleep_until(self.deadline)),
            header: [0; 8],
            header_len: 0,
            frame_left: 0,
            frames: 0,
            acceptor: self.acceptor,
        };
        (Box::new(read), Box::new(w))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.label.clone())
    }
}

/// The read half: enforces the pre-authentication rules, then passes bytes through.
struct GuardedRead<R> {
    inner: R,
    guard: Arc<Guard>,
    sleep: Pin<Box<Sleep>>,
    /// The length prefix of the next frame, as far as read.
    header: [u8; 8],
    header_len: usize,
    /// Bytes of the current frame still to come.
    frame_left: u64,
    /// Frames announced so far.
    frames: u64,
    acceptor: Arc<Acceptor>,
}

impl<R> GuardedRead<R> {
    fn refuse(&self, why: &str) -> io::Error {
        self.acceptor
            .counters
            .closed_preauth
            .fetch_add(1, Ordering::Relaxed);
        io::Error::new(io::ErrorKind::InvalidData, why.to_string())
    }

    /// Follows frame boundaries through `bytes`; an error if an unauthenticated peer
    /// announces a frame over the limit.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), u64> {
        while !bytes.is_empty() {
            if self.frame_left > 0 {
                let n = usize::try_from(self.frame_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.frame_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (8 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == 8 {
                self.header_len = 0;
                let len = u64::from_be_bytes(self.header);
                let limit = if self.frames < HANDSHAKE_FRAMES {
                    PREAUTH_FRAME_LIMIT
                } else {
                    POSTHANDSHAKE_FRAME_LIMIT
                };
                if len > limit {
                    return Err(len);
                }
                self.frames += 1;
                self.frame_left = len;
            }
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for GuardedRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.guard.authenticated.load(Ordering::Acquire) {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.refuse("did not authenticate in time")));
        }
        if self.frames >= PREAUTH_MAX_FRAMES && self.frame_left == 0 && self.header_len == 0 {
            // More frames than a handshake takes and no authentication seen: stop reading
            // (a legitimate peer's first messages wait a moment for herd to see its
            // authentication; a flood of frames that ractor would log one by one stays in
            // the socket) until the flag is set or the deadline closes the connection.
            *lock(&self.guard.parked) = Some(cx.waker().clone());
            if !self.guard.authenticated.load(Ordering::Acquire) {
                return Poll::Pending;
            }
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            // Authentication may have completed while these bytes were on their way; the
            // frames are checked all the same until the flag is seen.
            let fresh = buf.filled()[before..].to_vec();
            if let Err(len) = self.scan(&fresh) {
                let e = self.refuse(&format!(
                    "a frame of {len} bytes announced before authentication"
                ));
                return Poll::Ready(Err(e));
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> GuardedRead<tokio::io::Empty> {
        let acceptor = Arc::new(Acceptor::default());
        acceptor.pending.fetch_add(1, Ordering::AcqRel);
        GuardedRead {
            inner: tokio::io::empty(),
            guard: Arc::new(Guard {
                authenticated: AtomicBool::new(false),
                released: AtomicBool::new(false),
                pending: Arc::clone(&acceptor.pending),
                parked: Mutex::new(None),
            }),
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(60))),
            header: [0; 8],
            header_len: 0,
            frame_left: 0,
            frames: 0,
            acceptor,
        }
    }

    fn frame(len: u64) -> Vec<u8> {
        let mut f = len.to_be_bytes().to_vec();
        f.resize(8 + len as usize, 7);
        f
    }

    #[tokio::test]
    async fn small_frames_pass_in_any_split_and_a_large_announcement_fails() {
        let mut r = reader();
        let mut bytes = frame(10);
        bytes.extend(frame(300));
        bytes.extend(frame(0));
        for chunk in bytes.chunks(3) {
            assert_eq!(r.scan(chunk), Ok(()));
        }
        assert_eq!(r.frame_left, 0);
        assert_eq!(r.header_len, 0);
        // Past the handshake frames, up to 1 MiB passes (a fresh session's actor list may
        // race herd's bookkeeping); more does not.
        assert_eq!(r.scan(&frame(200_000)), Ok(()));
        let big = (8u64 << 20).to_be_bytes();
        assert_eq!(r.scan(&big[..5]), Ok(()));
        assert_eq!(r.scan(&big[5..]), Err(8 << 20));
        // In the handshake, 64 KiB is the limit.
        let mut fresh = reader();
        assert_eq!(fresh.scan(&(100_000u64).to_be_bytes()), Err(100_000));
    }

    #[tokio::test]
    async fn the_pending_count_is_released_once() {
        let r = reader();
        let acceptor = Arc::clone(&r.acceptor);
        assert_eq!(acceptor.pending(), 1);
        r.guard.release();
        r.guard.release();
        drop(r);
        assert_eq!(acceptor.pending(), 0);
    }
}
