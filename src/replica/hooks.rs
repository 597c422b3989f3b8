//! Test hooks: sending malformed frames to a neighbour, to test that it refuses and counts
//! them. Only with the `test-hooks` feature (off by default; herd's own tests turn it on).

use super::view::MapView;
use super::{Replica, ReplicaError};
use crate::cluster::ClusterError;
use crate::codec;

/// A malformed frame to send to a neighbour, to test that it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bytes that are not a sync message.
    Garbage,
    /// A frame larger than `max_sync_size`.
    Oversized,
    /// A frame of a wire version newer than this one.
    FutureVersion,
    /// Bytes without the cluster's envelope.
    Unframed,
}

impl<C: MapView> Replica<C> {
    /// Sends a malformed frame to neighbour node `to`, to test that it is refused and counted.
    ///
    /// # Errors
    /// [`ReplicaError::Cluster`] when the replica is in no cluster or the frame cannot be sent.
    pub fn inject(&self, to: &str, fault: Fault) -> Result<(), ReplicaError> {
        let outbox = self.shared.outbox.get().ok_or(ClusterError::ShutDown)?;
        let v = codec::WIRE_VERSION;
        let result = match fault {
            Fault::Garbage => outbox.send(to, vec![v, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x13]),
            Fault::FutureVersion => outbox.send(to, vec![v + 1, 0, 1, 2, 3]),
            Fault::Oversized => {
                let mut bytes = vec![0u8; self.shared.max_sync_size + 1];
                bytes[0] = v;
                outbox.send(to, bytes)
            }
            Fault::Unframed => outbox.send_unframed(to, b"\x00not a herd frame\xff".to_vec()),
        };
        Ok(result?)
    }
}
