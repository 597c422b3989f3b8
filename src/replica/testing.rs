//! Test support for other modules' in-process tests: two replicas wired to each other through
//! a loop-back outbox (the real transport is tested with node processes in `tests/`).

use super::actor::ReplicaMsg;
use super::shared::Outbox;
use super::{MapView, Replica};
use ractor::ActorRef;
use std::sync::Arc;

/// Delivers to another replica's actor as if from node `from`.
struct Loop {
    from: String,
    to: ActorRef<ReplicaMsg>,
}

impl Outbox for Loop {
    fn send(&self, _to: &str, bytes: Vec<u8>) -> Result<(), String> {
        self.to
            .cast(ReplicaMsg::Inbound {
                from: self.from.clone(),
                bytes,
            })
            .map_err(|e| e.to_string())
    }
    fn send_unframed(&self, to: &str, bytes: Vec<u8>) -> Result<(), String> {
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
    for (me, other, name, other_name) in [(a, b, a_name, b_name), (b, a, b_name, a_name)] {
        me.attach(Arc::new(Loop {
            from: name.into(),
            to: other.actor().clone(),
        }));
        me.set_neighbours([other_name.to_string()]);
    }
}
