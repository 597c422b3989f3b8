//! Test support for other modules' in-process tests: replicas wired to each other through a
//! loop-back network of actors (the real transport is tested with node processes in `tests/`).

use super::actor::ReplicaMsg;
use super::shared::Outbox;
use super::{MapView, Replica};
use crate::cluster::ClusterError;
use ractor::ActorRef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Node names to replica actors; a node that restarts is joined again under its name.
#[derive(Clone, Default)]
pub(crate) struct Net {
    nodes: Arc<Mutex<HashMap<String, ActorRef<ReplicaMsg>>>>,
}

impl Net {
    /// Puts `replica` on the network as node `name` (replacing a previous run of that node)
    /// and makes it send through the network.
    pub(crate) fn join<C: MapView>(&self, name: &str, replica: &Replica<C>) {
        self.lock()
            .insert(name.to_owned(), replica.actor_ref().clone());
        replica.attach(Arc::new(Port {
            from: name.to_owned(),
            net: self.clone(),
        }));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ActorRef<ReplicaMsg>>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One node's way out.
struct Port {
    from: String,
    net: Net,
}

impl Outbox for Port {
    fn send(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        let not_sent = |reason: String| ClusterError::Send {
            node: to.to_string(),
            reason,
        };
        let actor = self.net.lock().get(to).cloned();
        let actor = actor.ok_or_else(|| not_sent("no such node".into()))?;
        actor
            .cast(ReplicaMsg::Inbound {
                from: self.from.clone(),
                bytes,
            })
            .map_err(|e| not_sent(e.to_string()))
    }
    fn send_unframed(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        self.send(to, bytes)
    }
    fn frames_rejected(&self) -> u64 {
        0
    }
    fn transport_bytes(&self) -> (u64, u64) {
        (0, 0)
    }
    fn close(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// Makes `a` (called `a_name`) and `b` (called `b_name`) each other's only neighbour.
pub(crate) fn wire<C: MapView>(a: &Replica<C>, a_name: &str, b: &Replica<C>, b_name: &str) {
    let net = Net::default();
    net.join(a_name, a);
    net.join(b_name, b);
    a.set_neighbours([b_name.to_string()]);
    b.set_neighbours([a_name.to_string()]);
}
