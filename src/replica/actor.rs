//! The ractor actor of a replica: it moves time (ticks) and neighbours' bytes into the
//! sync state and sends what the protocol wants sent.

use super::shared::Shared;
use super::view::MapView;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// What a replica's actor is told. Local only: the cluster layer turns network frames into
/// [`ReplicaMsg::Inbound`] after checking their envelope.
#[derive(ractor_cluster::RactorMessage)]
pub(crate) enum ReplicaMsg {
    /// A sync interval passed.
    Tick,
    /// Sync bytes from the replica of the same name on node `from`.
    Inbound { from: String, bytes: Vec<u8> },
    /// The nodes now hosting a replica of this name.
    Members(BTreeSet<String>),
}

pub(crate) struct ReplicaActor<C>(PhantomData<fn() -> C>);

impl<C> ReplicaActor<C> {
    pub(crate) fn new() -> Self {
        ReplicaActor(PhantomData)
    }
}

impl<C: MapView> Actor for ReplicaActor<C> {
    type Msg = ReplicaMsg;
    type State = Arc<Shared<C>>;
    type Arguments = (Arc<Shared<C>>, Duration);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (shared, interval): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(interval, || ReplicaMsg::Tick);
        Ok(shared)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        shared: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let transmits = {
            let mut core = shared.lock();
            match message {
                ReplicaMsg::Tick => core.sync.handle_tick(),
                ReplicaMsg::Inbound { from, bytes } => {
                    let known = core.sync.crdt().as_causal().context().dot_count();
                    let result = core.sync.handle_message(&from, &bytes);
                    if shared.storage.is_some()
                        && core.sync.crdt().as_causal().context().dot_count() != known
                    {
                        // The context grew (maybe without any key changing: seen ranges of a
                        // repair): store it, so a restart does not ask for it again.
                        core.touched();
                    }
                    if let Err(error) = result {
                        // Counted in the stats; the replica keeps serving.
                        tracing::warn!(replica = %shared.name, from = %from, %error, "refused a sync message");
                    }
                }
                ReplicaMsg::Members(members) => {
                    if !core.manual_neighbours {
                        tracing::info!(replica = %shared.name, ?members, "neighbours follow membership");
                        core.sync.set_neighbours(members);
                    }
                }
            }
            while let Some(warning) = core.sync.poll_warning() {
                // Each is reported once per key and neighbour by the sync layer.
                tracing::warn!(replica = %shared.name, ?warning, "entry does not fit a neighbour's message limit");
            }
            (shared.drain(&mut core), core.seq())
        };
        let (transmits, seq) = transmits;
        shared.wake_committer();
        if !transmits.is_empty() {
            // Nothing leaves before the state it was read from is durable: a crash must never
            // forget a dot of ours that a neighbour already holds (the restarted replica keeps
            // its id and would mint that dot again, and the neighbour would ignore the write).
            if let Err(error) = shared.until_durable(seq).await {
                tracing::warn!(replica = %shared.name, %error, "not sending: state not stored");
                return Ok(());
            }
        }
        shared.transmit(transmits);
        Ok(())
    }
}
