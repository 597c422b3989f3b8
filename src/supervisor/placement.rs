//! Placement: which node runs a child, computed (never stored) from the child id and the
//! member list, so every node that sees the same members computes the same owner.

use std::collections::BTreeSet;

/// Decides where children run. Every node must use the same strategy with the same
/// settings: the answers are only consistent if they are computed the same way everywhere.
pub trait DistributionStrategy: Send + Sync + 'static {
    /// The node, among `members` (the live, eligible nodes including this one, sorted), that
    /// should run child `id`; `None` if no node should (no member).
    fn owner(&self, id: &str, members: &[String]) -> Option<String>;

    /// Whether a node that sees `live` (every live node hosting the supervisor, itself
    /// included, sorted) may run children and accept new ones. The default: always.
    fn has_quorum(&self, live: &[String]) -> bool {
        let _ = live;
        true
    }
}

/// Rendezvous (highest-random-weight) hashing: the owner of a child is the member with the
/// largest `hash(child id, node name)`, ties broken by the larger node name.
///
/// Why rendezvous and not a hash ring: the answer depends only on the set of members (no
/// ring state, no order), and a node joining or leaving moves only the children it wins or
/// held, about 1/n of them. The hash is xxh3 (already herd's hash for keys and Merkle
/// leaves): fast and well mixed; placement needs no cryptographic strength.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rendezvous;

impl DistributionStrategy for Rendezvous {
    fn owner(&self, id: &str, members: &[String]) -> Option<String> {
        members
            .iter()
            .max_by(|a, b| {
                weight(id, a)
                    .cmp(&weight(id, b))
                    .then_with(|| a.as_str().cmp(b.as_str()))
            })
            .cloned()
    }
}

/// The rendezvous weight of `node` for child `id`. The length prefix keeps ("ab", "c") and
/// ("a", "bc") apart.
pub(crate) fn weight(id: &str, node: &str) -> u64 {
    let mut bytes = Vec::with_capacity(8 + id.len() + node.len());
    bytes.extend_from_slice(&(id.len() as u64).to_le_bytes());
    bytes.extend_from_slice(id.as_bytes());
    bytes.extend_from_slice(node.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Rendezvous placement that runs children only on a side of the cluster that holds a
/// strict majority of a **static** set of expected members.
///
/// The majority is counted against a number fixed in configuration, never against the live
/// member list: counted over the live list, every side of a partition thinks it has a
/// majority (Horde #45, fixed there by static members, #47). A node on a minority side stops
/// its children and refuses [`start_child`](super::Supervisor::start_child) with
/// [`NoQuorum`](super::SupervisorError::NoQuorum).
#[derive(Debug, Clone)]
pub struct Quorum {
    expected: Expected,
}

#[derive(Debug, Clone)]
enum Expected {
    Count(usize),
    Names(BTreeSet<String>),
}

impl Quorum {
    /// A majority of `n` nodes: more than `n / 2` live nodes hosting the supervisor.
    pub fn count(n: usize) -> Self {
        Quorum {
            expected: Expected::Count(n),
        }
    }

    /// A majority of these named nodes: more than half of them live. Nodes outside the
    /// list may run children but do not count toward the majority.
    pub fn members<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Quorum {
            expected: Expected::Names(names.into_iter().map(Into::into).collect()),
        }
    }
}

impl DistributionStrategy for Quorum {
    fn owner(&self, id: &str, members: &[String]) -> Option<String> {
        Rendezvous.owner(id, members)
    }

    fn has_quorum(&self, live: &[String]) -> bool {
        match &self.expected {
            Expected::Count(n) => live.len() * 2 > *n,
            Expected::Names(names) => {
                let up = live.iter().filter(|n| names.contains(*n)).count();
                up * 2 > names.len()
            }
        }
    }
}
