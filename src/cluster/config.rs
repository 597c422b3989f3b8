//! Node configuration.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use std::time::Duration;

use super::ClusterError;
use super::detector::DetectorConfig;

/// The default `max_message_size`: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The default cookie (shared secret). Change it for anything but tests.
pub const DEFAULT_COOKIE: &str = "herd";

/// The longest node name accepted, in bytes.
pub const MAX_NODE_NAME_LEN: usize = 255;

/// TLS for node-to-node connections: the acceptor for inbound sessions, the connector and the
/// server name for outbound ones.
///
/// With TLS the node runs ractor_cluster in *Isolated* mode (ractor's transitive dialing does
/// not use TLS), so every node must list the nodes it should connect to in its seeds.
#[derive(Clone)]
#[non_exhaustive]
pub struct TlsConfig {
    /// Accepts inbound connections.
    pub acceptor: TlsAcceptor,
    /// Opens outbound connections.
    pub connector: TlsConnector,
    /// The name outbound connections check the peer's certificate against.
    pub server_name: ServerName<'static>,
}

impl TlsConfig {
    /// Bundles an acceptor, a connector and the server name to verify peers against.
    pub fn new(
        acceptor: TlsAcceptor,
        connector: TlsConnector,
        server_name: ServerName<'static>,
    ) -> Self {
        Self {
            acceptor,
            connector,
            server_name,
        }
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// How to start a [`Node`](super::Node).
///
/// ```
/// use herd::cluster::NodeConfig;
///
/// let config = NodeConfig::new("node-a")
///     .listen("127.0.0.1:0".parse().unwrap())
///     .seed("127.0.0.1:4100")
///     .cookie("s3cret")
///     .max_message_size(1 << 20);
/// assert_eq!(config.seeds, ["127.0.0.1:4100"]);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The node's name: its identity in the cluster, unique among all nodes (two live nodes
    /// with one name make ractor_cluster's sessions flap). At most [`MAX_NODE_NAME_LEN`] bytes.
    pub name: String,
    /// Where to listen. Default `127.0.0.1:0`; port 0 picks a free port, which
    /// [`Node::listen_addr`](super::Node::listen_addr) reports. The IP is also what peers are
    /// told to dial, so use a concrete address, not `0.0.0.0`, when nodes are on several hosts.
    pub listen: SocketAddr,
    /// `host:port` of nodes to join. Dialed at start and redialed forever while down.
    pub seeds: Vec<String>,
    /// The shared secret; a peer with another cookie is refused. Default [`DEFAULT_COOKIE`].
    pub cookie: String,
    /// Optional TLS for all node-to-node connections.
    pub tls: Option<TlsConfig>,
    /// The largest payload a group sends or accepts, in bytes. Default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`]. Every node of a cluster should use the same value.
    pub max_message_size: usize,
    /// The failure detector's settings (heartbeat interval, timeouts). Default
    /// [`DetectorConfig::default`]. Every node of a cluster should use the same values.
    pub detector: DetectorConfig,
    /// How long [`Node::shutdown`](super::Node::shutdown) waits for peers to acknowledge
    /// its leave announcement. Default 500 ms; a peer that does not answer in time reports
    /// this node down when its session closes instead.
    pub leave_timeout: Duration,
    /// How long a graceful leave ([`Node::shutdown`](super::Node::shutdown),
    /// [`Replica::stop`](crate::replica::Replica::stop)) may spend handing data over: waiting
    /// until every neighbour confirms it holds everything this replica holds. Default 5 s.
    /// When it runs out the node leaves anyway: what was not handed over stays on this
    /// node's storage, and comes back with it.
    pub handover_timeout: Duration,
}

impl NodeConfig {
    /// A configuration with the given node name and every other setting at its default.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            seeds: Vec::new(),
            cookie: DEFAULT_COOKIE.to_string(),
            tls: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            detector: DetectorConfig::default(),
            leave_timeout: Duration::from_millis(500),
            handover_timeout: Duration::from_secs(5),
        }
    }

    /// Sets the failure detector's settings.
    pub fn detector(mut self, d: DetectorConfig) -> Self {
        self.detector = d;
        self
    }

    /// Sets how long a graceful leave may spend handing data over.
    pub fn handover_timeout(mut self, t: Duration) -> Self {
        self.handover_timeout = t;
        self
    }

    /// Sets the listen address (port 0 = any free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Adds a seed, `host:port`.
    pub fn seed(mut self, addr: impl Into<String>) -> Self {
        self.seeds.push(addr.into());
        self
    }

    /// Sets the cookie (shared secret).
    pub fn cookie(mut self, c: impl Into<String>) -> Self {
        self.cookie = c.into();
        self
    }

    /// Turns on TLS for every connection.
    pub fn tls(mut self, t: TlsConfig) -> Self {
        self.tls = Some(t);
        self
    }

    /// Sets the largest payload a group sends or accepts.
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }

    /// The inbound frame limit handed to ractor_cluster: comfortably above the largest herd
    /// frame, so that an oversized herd message reaches herd (and is refused and counted there)
    /// instead of tearing down the whole session.
    pub(crate) fn inbound_frame_limit(&self) -> u64 {
        let limit = self
            .max_message_size
            .saturating_mul(2)
            .saturating_add(64 * 1024);
        u64::try_from(limit).unwrap_or(u64::MAX)
    }

    /// Checks what [`Node::start`](super::Node::start) needs before it opens anything.
    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |reason: String| Err(ClusterError::InvalidConfig { reason });
        if self.name.is_empty() {
            return invalid("the node name is empty".into());
        }
        if self.name.len() > MAX_NODE_NAME_LEN {
            return invalid(format!(
                "the node name is {} bytes long, the limit is {MAX_NODE_NAME_LEN}",
                self.name.len()
            ));
        }
        if self.name.chars().any(char::is_control) {
            return invalid("the node name contains a control character".into());
        }
        if self.max_message_size == 0 {
            return invalid("max_message_size is 0".into());
        }
        self.detector.validate().or_else(invalid)?;
        for seed in &self.seeds {
            let ok = seed
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return invalid(format!("seed {seed:?} is not host:port"));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("seeds", &self.seeds)
            .field("cookie", &"<redacted>")
            .field("tls", &self.tls)
            .field("max_message_size", &self.max_message_size)
            .field("detector", &self.detector)
            .field("leave_timeout", &self.leave_timeout)
            .field("handover_timeout", &self.handover_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = NodeConfig::new("a");
        assert_eq!(c.name, "a");
        assert_eq!(c.listen, "127.0.0.1:0".parse().unwrap());
        assert!(c.seeds.is_empty());
        assert_eq!(c.cookie, "herd");
        assert!(c.tls.is_none());
        assert_eq!(c.max_message_size, 4 * 1024 * 1024);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn builder_sets_fields() {
        let c = NodeConfig::new("a")
            .listen("127.0.0.1:4000".parse().unwrap())
            .seed("127.0.0.1:4001")
            .seed("localhost:4002")
            .cookie("c")
            .max_message_size(10);
        assert_eq!(c.listen.port(), 4000);
        assert_eq!(c.seeds, ["127.0.0.1:4001", "localhost:4002"]);
        assert_eq!(c.cookie, "c");
        assert_eq!(c.max_message_size, 10);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn frame_limit_is_above_the_message_limit() {
        let c = NodeConfig::new("a").max_message_size(1000);
        assert_eq!(c.inbound_frame_limit(), 2000 + 65536);
        let huge = NodeConfig::new("a").max_message_size(usize::MAX);
        assert_eq!(
            huge.inbound_frame_limit(),
            u64::try_from(usize::MAX).unwrap_or(u64::MAX)
        );
    }

    #[test]
    fn debug_hides_the_cookie() {
        let s = format!("{:?}", NodeConfig::new("a").cookie("topsecret"));
        assert!(!s.contains("topsecret"), "{s}");
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad = [
            NodeConfig::new(""),
            NodeConfig::new("x".repeat(MAX_NODE_NAME_LEN + 1)),
            NodeConfig::new("a\nb"),
            NodeConfig::new("a").max_message_size(0),
            NodeConfig::new("a").seed("nohostport"),
            NodeConfig::new("a").seed(":4000"),
            NodeConfig::new("a").seed("host:notaport"),
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(ClusterError::InvalidConfig { .. })),
                "{c:?} should be invalid"
            );
        }
        assert!(
            NodeConfig::new("x".repeat(MAX_NODE_NAME_LEN))
                .validate()
                .is_ok()
        );
    }
}
