//! Dialing seeds and peers, with backoff, without making sessions flap.
//!
//! ractor_cluster never redials. herd runs at most one dial loop per address, and a loop
//! dials only while no live (authenticated) session reaches that address: naive redialing on
//! every `disconnected` event displaces live sessions through ractor's duplicate-connection
//! election and makes them flap (notes/ractor_cluster.md §5). A loop ends once a session to
//! its address authenticates; `client_connect` returning `Ok` only means the socket opened, so
//! the loop waits for the handshake (or for the session to close) before it counts an attempt
//! as done.

use super::lock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::NodeServerMessage;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::TlsConfig;
use super::node::Counters;
use super::sessions::{Outbound, SessionTable};

/// First retry delay.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(50);
/// Largest retry delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A learned (non-seed) peer is given up after this long without success.
pub(crate) const GIVE_UP_LEARNED: Duration = Duration::from_secs(60);
/// How long a dialed session may take to authenticate before the attempt counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a TCP (and TLS) connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A learned peer that went down is redialed only after this delay, so that when the peer
/// itself dials back (we are its seed) its session usually wins and ours is never opened.
const LEARNED_FIRST_DELAY: Duration = Duration::from_millis(250);

/// Capped exponential backoff: 50 ms, 100 ms, 200 ms, ... up to 1 s.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `start`, doubles up to `max`.
    pub(crate) fn new(start: Duration, max: Duration) -> Self {
        Self { next: start, max }
    }

    /// The delay to wait now; the following one is doubled.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }
}

/// What a dial loop dials.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port`.
    pub(crate) addr: String,
    /// Seeds are dialed forever; learned peers for [`GIVE_UP_LEARNED`].
    pub(crate) seed: bool,
    /// Whether this loop replaces a lost session (every attempt then counts as a reconnect
    /// attempt) or is the first dial to a seed (only its retries count).
    pub(crate) reconnect: bool,
}

/// Owns the dial loops of one node.
pub(crate) struct Dialer {
    pub(crate) server: ActorRef<NodeServerMessage>,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) seeds: Vec<String>,
    pub(crate) table: Arc<Mutex<SessionTable>>,
    /// Bumped on every session event, so loops waiting for a handshake wake up.
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) counters: Arc<Counters>,
    /// Node name -> the seed address that reached it.
    seed_of: Mutex<HashMap<String, String>>,
    /// Running loops, by address.
    loops: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Where this node listens: a seed that resolves here is this node itself.
    listen: SocketAddr,
}

impl Dialer {
    /// A dialer with no loops running.
    pub(crate) fn new(
        server: ActorRef<NodeServerMessage>,
        tls: Option<TlsConfig>,
        seeds: Vec<String>,
        table: Arc<Mutex<SessionTable>>,
        counters: Arc<Counters>,
        listen: SocketAddr,
    ) -> Self {
        Self {
            server,
            tls,
            seeds,
            table,
            changed: watch::Sender::new(0),
            counters,
            seed_of: Mutex::new(HashMap::new()),
            loops: Mutex::new(HashMap::new()),
            listen,
        }
    }

    /// Wakes loops waiting for a handshake.
    pub(crate) fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts the first dial to every seed.
    pub(crate) fn dial_seeds(self: &Arc<Self>) {
        for seed in self.seeds.clone() {
            self.ensure_loop(Target {
                addr: seed,
                seed: true,
                reconnect: false,
            });
        }
    }

    /// Peer `name`, which advertised `conn`, lost its last session: redial it if we know how.
    pub(crate) fn peer_down(self: &Arc<Self>, name: &str, conn: Option<&str>) {
        let seed = lock(&self.seed_of).get(name).cloned().or_else(|| {
            let conn = conn?;
            let conn_addr = conn.parse::<SocketAddr>().ok();
            self.seeds
                .iter()
                .find(|s| {
                    s.as_str() == conn
                        || (conn_addr.is_some() && s.parse::<SocketAddr>().ok() == conn_addr)
                })
                .cloned()
        });
        let target = match (seed, conn) {
            (Some(addr), _) => Target {
                addr,
                seed: true,
                reconnect: true,
            },
            (None, Some(conn)) => Target {
                addr: conn.to_string(),
                seed: false,
                reconnect: true,
            },
            (None, None) => return,
        };
        tracing::debug!(peer = name, addr = %target.addr, seed = target.seed, "peer down, redialing");
        self.ensure_loop(target);
    }

    /// Starts a loop for `target` unless one is running for its address.
    fn ensure_loop(self: &Arc<Self>, target: Target) {
        let mut loops = lock(&self.loops);
        if loops.get(&target.addr).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let this = Arc::clone(self);
        let addr = target.addr.clone();
        loops.insert(addr, tokio::spawn(async move { this.run(target).await }));
    }

    /// Stops every loop.
    pub(crate) fn stop(&self) {
        for (_, h) in lock(&self.loops).drain() {
            h.abort();
        }
    }

    async fn run(self: Arc<Self>, target: Target) {
        let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
        let started = Instant::now();
        if target.reconnect && !target.seed {
            tokio::time::sleep(LEARNED_FIRST_DELAY).await;
        }
        let mut attempt: u64 = 0;
        loop {
            if !target.seed && started.elapsed() > GIVE_UP_LEARNED {
                tracing::warn!(addr = %target.addr, "giving up on a learned peer after {GIVE_UP_LEARNED:?}");
                return;
            }
            match resolve(&target.addr).await {
                Some(sa) if is_self(sa, self.listen) => {
                    // ractor refuses a connection to itself, and the loop would redial it
                    // forever (dozens of log lines a second): the same seed list is often
                    // given to every node, this one included.
                    tracing::info!(addr = %target.addr, "skipping a seed that is this node itself");
                    return;
                }
                Some(sa) => {
                    if let Some(name) = lock(&self.table).live_at(sa) {
                        tracing::debug!(addr = %target.addr, peer = %name, "already connected");
                        self.remember(&target, &name);
                        return;
                    }
                    if target.reconnect || attempt > 0 {
                        self.counters
                            .reconnect_attempts
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    attempt += 1;
                    if let Some(name) = self.dial_once(sa).await {
                        tracing::info!(addr = %target.addr, peer = %name, "connected");
                        self.remember(&target, &name);
                        return;
                    }
                }
                None => tracing::debug!(addr = %target.addr, "cannot resolve"),
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    fn remember(&self, target: &Target, name: &str) {
        if target.seed {
            lock(&self.seed_of).insert(name.to_string(), target.addr.clone());
        }
    }

    /// Dials `sa` once and waits for the session to authenticate (`Some(peer name)`) or to
    /// fail.
    async fn dial_once(&self, sa: SocketAddr) -> Option<String> {
        let mut changed = self.changed.subscribe();
        let dial = async {
            match &self.tls {
                None => ractor_cluster::client_connect(&self.server, sa).await,
                Some(tls) => {
                    ractor_cluster::client_connect_enc(
                        &self.server,
                        sa,
                        tls.connector.clone(),
                        tls.server_name.clone(),
                    )
                    .await
                }
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, dial).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%sa, error = %e, "dial failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%sa, "dial timed out");
                return None;
            }
        }
        let key = sa.to_string();
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut seen = false;
        loop {
            let state = lock(&self.table).outbound(&key);
            match state {
                Outbound::Authenticated(name) => return Some(name),
                Outbound::Pending => seen = true,
                Outbound::None if seen => {
                    // Closed before authenticating: refused, or lost an election. If the peer
                    // is connected some other way, `run` notices before the next dial.
                    return None;
                }
                Outbound::None => {}
            }
            tokio::select! {
                res = changed.changed() => if res.is_err() { return None },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(%sa, "handshake timed out");
                    return None;
                }
            }
        }
    }
}

/// Whether dialing `sa` would reach a node listening on `listen`: the same address, or the
/// same port on a loopback address when listening on every interface.
fn is_self(sa: SocketAddr, listen: SocketAddr) -> bool {
    if sa.port() != listen.port() {
        return false;
    }
    sa.ip() == listen.ip() || (listen.ip().is_unspecified() && sa.ip().is_loopback())
}

/// The first socket address `addr` resolves to.
async fn resolve(addr: &str) -> Option<SocketAddr> {
    tokio::net::lookup_host(addr).await.ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut b = Backoff::new(BACKOFF_START, BACKOFF_MAX);
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn a_seed_is_this_node_only_at_its_own_address() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(is_self(a("127.0.0.1:4000"), a("127.0.0.1:4000")));
        assert!(is_self(a("127.0.0.1:4000"), a("0.0.0.0:4000")));
        assert!(is_self(a("[::1]:4000"), a("[::]:4000")));
        assert!(!is_self(a("127.0.0.1:4001"), a("127.0.0.1:4000")));
        assert!(!is_self(a("127.0.0.2:4000"), a("127.0.0.1:4000")));
    }

    #[tokio::test]
    async fn resolves_ip_and_rejects_garbage() {
        assert_eq!(
            resolve("127.0.0.1:4000").await,
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(resolve("not an address").await, None);
    }
}
