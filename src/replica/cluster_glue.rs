//! Joining a replica to the cluster: one [`Group`] per replica name, whose members are the
//! replica's neighbours unless they were set by hand.

use super::actor::ReplicaMsg;
use super::shared::Outbox;
use super::view::MapView;
use super::{Replica, ReplicaError, ReplicaOptions};
use crate::cluster::{ClusterError, Group, GroupEvent, Node};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

impl Outbox for Group {
    fn send(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        Group::send(self, to, bytes)
    }

    #[cfg(any(test, feature = "test-hooks"))]
    fn send_unframed(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        Group::send_unframed(self, to, bytes)
    }

    fn frames_rejected(&self) -> u64 {
        self.stats().frames_rejected
    }

    fn transport_bytes(&self) -> (u64, u64) {
        let stats = self.stats();
        (stats.bytes_sent, stats.bytes_received)
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.leave())
    }
}

impl<C: MapView> Replica<C> {
    /// Starts a replica on `node`: it joins the node's group named `options.name`, and its
    /// neighbours follow the live nodes hosting a replica of the same name (Horde's
    /// `members: :auto`) until [`set_neighbours`](Replica::set_neighbours) is called.
    ///
    /// # Errors
    /// As [`start_local`](Replica::start_local); [`ReplicaError::LimitsDisagree`] (nothing
    /// started) when the replica's `max_sync_size` exceeds the node's `max_message_size`, so
    /// that its larger messages would be refused by the transport; [`ReplicaError::Cluster`]
    /// when the group cannot be joined (a replica of that name already runs on this node).
    ///
    /// # Cancel safety
    /// Not cancel safe (see [`start_local`](Replica::start_local)).
    pub async fn start(node: &Node, options: ReplicaOptions) -> Result<Self, ReplicaError> {
        let max_message_size = node.max_message_size();
        if options.max_sync_size > max_message_size {
            return Err(ReplicaError::LimitsDisagree {
                max_sync_size: options.max_sync_size,
                max_message_size,
            });
        }
        let replica = Self::start_local(options).await?;
        let actor = replica.actor_ref().clone();
        let on_event = Box::new(move |event: GroupEvent| {
            let msg = match event {
                GroupEvent::Message { from, bytes } => ReplicaMsg::Inbound { from, bytes },
                GroupEvent::Members(members) => ReplicaMsg::Members(members),
            };
            // Fails only once the actor stopped; nothing is left to deliver to.
            let _ = actor.cast(msg);
        });
        match node.join_group(replica.name(), on_event).await {
            Ok(group) => {
                replica.attach(Arc::new(group));
                Ok(replica)
            }
            Err(e) => {
                let _ = replica.stop().await;
                Err(e.into())
            }
        }
    }
}
