//! Which peers are live: the pure bookkeeping of ractor_cluster's session events.
//!
//! A peer (a node name) is live while at least one of its sessions is authenticated. Sessions
//! are keyed by ractor's `node_id`, which is per session, not per peer: a reconnect, a
//! duplicate connection or an election loser each get a new one. A disconnect is "the peer is
//! down" only when it closes the peer's last authenticated session; a session that closes
//! before authenticating (wrong cookie, lost election, failed handshake) is counted as refused.

use std::collections::HashMap;
use std::net::SocketAddr;

/// One open session.
#[derive(Debug, Clone)]
struct Session {
    /// The TCP peer address (for an outbound session, the address that was dialed).
    peer_addr: String,
    /// Whether this node dialed it.
    outbound: bool,
    /// herd node name, once authenticated.
    name: Option<String>,
    /// The address the peer advertises (`host:port`), once authenticated.
    conn: Option<String>,
    /// The peer sent its initial state (its actors and pg groups are known here).
    ready: bool,
}

/// What a closed session meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Closed {
    /// It never authenticated.
    Refused,
    /// An authenticated session to `name` closed; `still_live` says whether another one is
    /// left (then the peer is not down).
    Lost {
        /// The peer's node name.
        name: String,
        /// The address the peer advertised.
        conn: Option<String>,
        /// Whether the peer still has an authenticated session.
        still_live: bool,
    },
}

/// What an authenticated session means for its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// The peer just became live (it had no other authenticated session).
    New,
    /// The peer was already live through another session of the same process.
    Known,
    /// Another live node already has this name and advertises another address: two
    /// processes share a name. The session is not counted as the peer's; it must be closed.
    Conflict {
        /// The address the node already a member advertises.
        existing: String,
    },
}

/// The state of outbound sessions to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outbound {
    /// No session to that address is open.
    None,
    /// A session is open but not authenticated yet.
    Pending,
    /// A session authenticated; the peer's node name.
    Authenticated(String),
}

/// Open sessions, by ractor `node_id`.
#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    sessions: HashMap<u64, Session>,
}

impl SessionTable {
    /// A session opened (no name yet).
    pub(crate) fn opened(&mut self, node_id: u64, peer_addr: String, outbound: bool) {
        self.sessions.insert(
            node_id,
            Session {
                peer_addr,
                outbound,
                name: None,
                conn: None,
                ready: false,
            },
        );
    }

    /// A session finished its initial sync: the peer's pg groups are known here.
    pub(crate) fn ready(&mut self, node_id: u64) {
        if let Some(s) = self.sessions.get_mut(&node_id) {
            s.ready = true;
        }
    }

    /// Whether every authenticated session has finished its initial sync, and how many
    /// authenticated sessions there are.
    pub(crate) fn all_ready(&self) -> (bool, usize) {
        let named = self.sessions.values().filter(|s| s.name.is_some());
        let (mut all, mut n) = (true, 0);
        for s in named {
            all &= s.ready;
            n += 1;
        }
        (all, n)
    }

    /// A session authenticated as node `name`, which advertises `conn`.
    ///
    /// A name is one process: if another session of `name` is live and advertises another
    /// address, this one belongs to a second process using the same name. It is left
    /// unnamed here (it never makes the peer live, and its close is a refusal), and the
    /// caller closes it. The first one keeps the name: refusing it instead would let any
    /// newcomer evict a member.
    pub(crate) fn authenticated(
        &mut self,
        node_id: u64,
        name: String,
        conn: String,
        peer_addr: String,
        outbound: bool,
    ) -> Auth {
        let existing = self
            .sessions
            .iter()
            .filter(|(id, _)| **id != node_id)
            .find_map(|(_, s)| {
                (s.name.as_deref() == Some(&name))
                    .then(|| s.conn.clone())
                    .flatten()
            });
        let ses = self.sessions.entry(node_id).or_insert(Session {
            peer_addr,
            outbound,
            name: None,
            conn: None,
            ready: false,
        });
        match existing {
            Some(existing) if existing != conn => Auth::Conflict { existing },
            Some(_) => {
                ses.name = Some(name);
                ses.conn = Some(conn);
                Auth::Known
            }
            None => {
                ses.name = Some(name);
                ses.conn = Some(conn);
                Auth::New
            }
        }
    }

    /// The node name of authenticated session `node_id`.
    pub(crate) fn name_of(&self, node_id: u64) -> Option<String> {
        self.sessions.get(&node_id).and_then(|s| s.name.clone())
    }

    /// Whether session `node_id` finished its initial sync.
    pub(crate) fn is_ready(&self, node_id: u64) -> bool {
        self.sessions.get(&node_id).is_some_and(|s| s.ready)
    }

    /// A session closed.
    pub(crate) fn disconnected(&mut self, node_id: u64) -> Closed {
        match self.sessions.remove(&node_id) {
            Some(Session {
                name: Some(name),
                conn,
                ..
            }) => {
                let still_live = self.is_live(&name);
                Closed::Lost {
                    name,
                    conn,
                    still_live,
                }
            }
            _ => Closed::Refused,
        }
    }

    /// Whether `name` has an authenticated session.
    pub(crate) fn is_live(&self, name: &str) -> bool {
        self.sessions
            .values()
            .any(|s| s.name.as_deref() == Some(name))
    }

    /// Node names of live peers, sorted.
    #[cfg(test)]
    pub(crate) fn live_names(&self) -> Vec<String> {
        let names: std::collections::BTreeSet<&str> = self
            .sessions
            .values()
            .filter_map(|s| s.name.as_deref())
            .collect();
        names.into_iter().map(str::to_string).collect()
    }

    /// The state of outbound sessions to `addr`.
    pub(crate) fn outbound(&self, addr: &str) -> Outbound {
        let mut state = Outbound::None;
        for s in self
            .sessions
            .values()
            .filter(|s| s.outbound && s.peer_addr == addr)
        {
            match &s.name {
                Some(name) => return Outbound::Authenticated(name.clone()),
                None => state = Outbound::Pending,
            }
        }
        state
    }

    /// The live peer reachable at `addr`, if any: an authenticated session dialed to `addr`,
    /// or one whose peer advertises `addr`.
    pub(crate) fn live_at(&self, addr: SocketAddr) -> Option<String> {
        let addr_s = addr.to_string();
        self.sessions.values().find_map(|s| {
            let name = s.name.as_ref()?;
            let dialed = s.outbound && s.peer_addr == addr_s;
            let advertised =
                s.conn.as_deref().and_then(|c| c.parse::<SocketAddr>().ok()) == Some(addr);
            (dialed || advertised).then(|| name.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "127.0.0.1:4000";

    #[test]
    fn lifecycle_of_one_peer() {
        let mut t = SessionTable::default();
        t.opened(0, A.into(), true);
        assert_eq!(t.outbound(A), Outbound::Pending);
        assert!(!t.is_live("b"));
        assert_eq!(
            t.authenticated(0, "b".into(), A.into(), A.into(), true),
            Auth::New
        );
        assert_eq!(t.outbound(A), Outbound::Authenticated("b".into()));
        assert_eq!(t.live_names(), ["b"]);
        assert_eq!(t.live_at(A.parse().unwrap()), Some("b".into()));
        assert_eq!(
            t.disconnected(0),
            Closed::Lost {
                name: "b".into(),
                conn: Some(A.into()),
                still_live: false
            }
        );
        assert_eq!(t.outbound(A), Outbound::None);
        assert!(t.live_names().is_empty());
    }

    #[test]
    fn unauthenticated_close_is_a_refusal() {
        let mut t = SessionTable::default();
        t.opened(3, "127.0.0.1:55555".into(), false);
        assert_eq!(t.disconnected(3), Closed::Refused);
        // An unknown id (never opened) is also not a peer going down.
        assert_eq!(t.disconnected(99), Closed::Refused);
    }

    #[test]
    fn losing_a_duplicate_session_does_not_take_the_peer_down() {
        let mut t = SessionTable::default();
        t.opened(0, A.into(), true);
        t.authenticated(0, "b".into(), A.into(), A.into(), true);
        // b also dialed us; that session authenticates and then one of the two loses.
        t.opened(1, "127.0.0.1:50000".into(), false);
        assert_eq!(
            t.authenticated(1, "b".into(), A.into(), "127.0.0.1:50000".into(), false),
            Auth::Known
        );
        assert_eq!(
            t.disconnected(0),
            Closed::Lost {
                name: "b".into(),
                conn: Some(A.into()),
                still_live: true
            }
        );
        assert!(t.is_live("b"));
        // Inbound session: found through the address b advertises.
        assert_eq!(t.outbound(A), Outbound::None);
        assert_eq!(t.live_at(A.parse().unwrap()), Some("b".into()));
        assert_eq!(t.live_at("127.0.0.1:1".parse().unwrap()), None);
    }

    #[test]
    fn a_second_process_with_a_live_name_is_a_conflict_and_never_live() {
        let mut t = SessionTable::default();
        t.opened(0, A.into(), true);
        t.authenticated(0, "b".into(), A.into(), A.into(), true);
        t.opened(1, "127.0.0.1:50001".into(), false);
        let other = "127.0.0.1:4999";
        assert_eq!(
            t.authenticated(1, "b".into(), other.into(), "127.0.0.1:50001".into(), false),
            Auth::Conflict { existing: A.into() }
        );
        assert_eq!(t.live_names(), ["b"]);
        assert_eq!(t.live_at(other.parse().unwrap()), None);
        // Closing it is a refusal, not the peer going down.
        assert_eq!(t.disconnected(1), Closed::Refused);
        assert!(t.is_live("b"));
        // Once the first process is gone, a process at another address may take the name
        // (a restart on a new port).
        t.disconnected(0);
        t.opened(2, "127.0.0.1:50002".into(), false);
        assert_eq!(
            t.authenticated(2, "b".into(), other.into(), "127.0.0.1:50002".into(), false),
            Auth::New
        );
    }
}
