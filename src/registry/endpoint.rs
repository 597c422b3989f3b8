//! How a name registered on another node is reached: one endpoint actor per node and
//! registry, not one cluster-layer group per name.
//!
//! Each registry publishes a single actor — its endpoint — with [`Node::publish`], so
//! the cluster layer holds one group per registry with one member per node. A cast or call
//! to a remote name is the caller's message serialized by ractor's own
//! [`Message::serialize`](ractor::Message::serialize) (the bytes ractor_cluster would send
//! to a stand-in), wrapped with the claim it is for, sent to the hosting node's endpoint, and
//! handed to the actor there with [`ActorCell::send_serialized`] — the path a ractor_cluster
//! session takes for its own stand-ins.
//!
//! Why not a stand-in per name, as [`Node::publish`] gives: ractor_cluster mirrors every pg
//! group to every peer and sends them all again on each new session, reading nothing from
//! that session meanwhile. With a group per name, 100,000 names were 100,000 groups re-sent
//! on every reconnect; heartbeats queued behind them, the failure detector declared the peer
//! unresponsive, and the reconnect started again. The endpoint keeps what a session carries
//! at start-up independent of how many names there are.
//!
//! [`Node::publish`]: crate::cluster::Node::publish

use super::Slot;
use crate::codec;
use ractor::concurrency::Duration;
use ractor::message::SerializedMessage;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, Message, MessagingErr, RpcReplyPort};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// This node's claims and their actors, shared by the registry and its endpoint.
pub(super) type LocalClaims = Arc<Mutex<HashMap<Slot, ActorCell>>>;

/// The largest envelope an endpoint decodes. Envelopes carry one user message; the cluster
/// session has its own frame limit, this one only bounds what a decode may allocate.
const ENVELOPE_LIMIT: usize = 64 * 1024 * 1024;

/// The cluster-layer name of registry `registry`'s endpoints.
pub(super) fn endpoint_name(registry: &str) -> String {
    format!("herd.registry/{registry}")
}

/// One message for one claim, as it crosses to the hosting node.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The claim the message is for: delivered only while the hosting node still holds it.
    slot: Slot,
    /// ractor's serialized form of the message.
    variant: String,
    args: Vec<u8>,
    metadata: Option<Vec<u8>>,
    /// For a call: how long the caller waits, so the host stops waiting too.
    timeout_ms: Option<u64>,
}

/// What a call's hosting node answers.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    /// The actor's reply, serialized.
    Reply(Vec<u8>),
    /// The hosting node no longer holds the claim (unregistered, stopped, lost a conflict,
    /// or a new incarnation).
    NotHere,
    /// The actor did not answer: it dropped the reply port, could not decode the message,
    /// or took longer than the caller waits.
    Silent,
    /// The envelope did not decode on the hosting node.
    Undecodable,
}

/// The endpoint's messages: a cluster message, so other nodes can send to it.
#[derive(ractor_cluster::RactorClusterMessage)]
pub(crate) enum EndpointMsg {
    /// An encoded [`Envelope`] holding a cast.
    Deliver(Vec<u8>),
    /// An encoded [`Envelope`] holding a call; answered with an encoded [`Answer`].
    #[rpc]
    Ask(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// The endpoint actor: delivers envelopes to this node's registered actors.
pub(super) struct Endpoint;

impl Actor for Endpoint {
    type Msg = EndpointMsg;
    type State = LocalClaims;
    type Arguments = LocalClaims;

    async fn pre_start(
        &self,
        _: ActorRef<EndpointMsg>,
        local: LocalClaims,
    ) -> Result<LocalClaims, ActorProcessingErr> {
        Ok(local)
    }

    async fn handle(
        &self,
        _: ActorRef<EndpointMsg>,
        msg: EndpointMsg,
        local: &mut LocalClaims,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EndpointMsg::Deliver(bytes) => deliver(local, &bytes),
            EndpointMsg::Ask(bytes, port) => ask(local, &bytes, port),
        }
        Ok(())
    }
}

fn holder(local: &LocalClaims, slot: &Slot) -> Option<ActorCell> {
    super::lock(local).get(slot).cloned()
}

fn decode(bytes: &[u8]) -> Option<Envelope> {
    match codec::decode::<Envelope>(bytes, ENVELOPE_LIMIT) {
        Ok(envelope) => Some(envelope),
        Err(e) => {
            tracing::warn!(error = %e, "registry endpoint: undecodable envelope dropped");
            None
        }
    }
}

/// A cast: handed to the actor if this node holds the claim; dropped otherwise, as a cast to
/// a stopped actor is.
fn deliver(local: &LocalClaims, bytes: &[u8]) {
    let Some(envelope) = decode(bytes) else {
        return;
    };
    let Some(cell) = holder(local, &envelope.slot) else {
        tracing::debug!(slot = ?envelope.slot, "registry endpoint: cast to a claim not held here dropped");
        return;
    };
    let _ = cell.send_serialized(SerializedMessage::Cast {
        variant: envelope.variant,
        args: envelope.args,
        metadata: envelope.metadata,
    });
}

/// A call: handed to the actor with a reply port of this node's; its reply (or why there is
/// none) goes back to the caller. The wait runs in a task, so a slow actor holds up no other
/// message of the endpoint.
fn ask(local: &LocalClaims, bytes: &[u8], port: RpcReplyPort<Vec<u8>>) {
    let answer = |port: RpcReplyPort<Vec<u8>>, answer: Answer| {
        if let Ok(bytes) = codec::encode(&answer, ENVELOPE_LIMIT) {
            let _ = port.send(bytes);
        }
    };
    let Some(envelope) = decode(bytes) else {
        return answer(port, Answer::Undecodable);
    };
    let Some(cell) = holder(local, &envelope.slot) else {
        return answer(port, Answer::NotHere);
    };
    let (tx, rx) = ractor::concurrency::oneshot::<Vec<u8>>();
    let wait = envelope.timeout_ms.map(Duration::from_millis);
    let reply: RpcReplyPort<Vec<u8>> = match wait {
        Some(wait) => (tx, wait).into(),
        None => tx.into(),
    };
    let sent = cell.send_serialized(SerializedMessage::Call {
        variant: envelope.variant,
        args: envelope.args,
        reply,
        metadata: envelope.metadata,
    });
    if sent.is_err() {
        return answer(port, Answer::NotHere);
    }
    tokio::spawn(async move {
        let reply = match wait {
            Some(wait) => tokio::time::timeout(wait, rx)
                .await
                .ok()
                .and_then(Result::ok),
            None => rx.await.ok(),
        };
        answer(port, reply.map_or(Answer::Silent, Answer::Reply));
    });
}

/// An actor found by name: to `cast` and `call` wherever it runs, as with an
/// [`ActorRef`] — `ractor::cast!` and `ractor::call_t!` work on it.
///
/// On its own node it is the actor itself ([`as_local`](Self::as_local)); on another node,
/// messages go through that node's registry endpoint, which delivers them only while the
/// claim found is still held there (a message for a name re-registered since goes nowhere,
/// and a call answers [`CallResult::SenderError`]). `M` must be the message type the actor
/// was registered with, and, for a remote actor, a cluster message
/// (`#[derive(RactorClusterMessage)]`).
#[derive(Debug)]
pub struct NamedActor<M: Message> {
    node: String,
    to: To<M>,
}

#[derive(Debug)]
enum To<M: Message> {
    Local(ActorRef<M>),
    Remote {
        slot: Slot,
        endpoint: ActorRef<EndpointMsg>,
    },
}

impl<M: Message> Clone for NamedActor<M> {
    fn clone(&self) -> Self {
        let to = match &self.to {
            To::Local(actor) => To::Local(actor.clone()),
            To::Remote { slot, endpoint } => To::Remote {
                slot: slot.clone(),
                endpoint: endpoint.clone(),
            },
        };
        NamedActor {
            node: self.node.clone(),
            to,
        }
    }
}

impl<M: Message> NamedActor<M> {
    pub(super) fn local(node: String, actor: ActorRef<M>) -> Self {
        NamedActor {
            node,
            to: To::Local(actor),
        }
    }

    pub(super) fn remote(node: String, slot: Slot, endpoint: ActorRef<EndpointMsg>) -> Self {
        NamedActor {
            node,
            to: To::Remote { slot, endpoint },
        }
    }

    /// The node the actor runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The actor itself, when it runs on this node.
    pub fn as_local(&self) -> Option<&ActorRef<M>> {
        match &self.to {
            To::Local(actor) => Some(actor),
            To::Remote { .. } => None,
        }
    }

    /// The actor itself, when it runs on this node.
    pub fn into_local(self) -> Option<ActorRef<M>> {
        match self.to {
            To::Local(actor) => Some(actor),
            To::Remote { .. } => None,
        }
    }

    /// Sends `msg` without waiting. For a remote actor, `Ok` means queued for its node, not
    /// delivered.
    ///
    /// # Errors
    /// [`MessagingErr::SendErr`] (with the message) when a local actor stopped;
    /// [`MessagingErr::InvalidActorType`] when `M` cannot be serialized for a remote actor;
    /// [`MessagingErr::ChannelClosed`] when the connection to its node closed.
    pub fn cast(&self, msg: M) -> Result<(), MessagingErr<M>> {
        let (slot, endpoint) = match &self.to {
            To::Local(actor) => return actor.cast(msg),
            To::Remote { slot, endpoint } => (slot, endpoint),
        };
        let Ok(SerializedMessage::Cast {
            variant,
            args,
            metadata,
        }) = msg.serialize()
        else {
            return Err(MessagingErr::InvalidActorType);
        };
        let bytes = seal(slot, variant, args, metadata, None)?;
        endpoint
            .cast(EndpointMsg::Deliver(bytes))
            .map_err(|_| MessagingErr::ChannelClosed)
    }

    /// Calls the actor with the message `build` makes from a reply port, waiting up to
    /// `timeout` (forever with `None`) — as [`ActorRef::call`].
    ///
    /// # Errors
    /// As [`cast`](Self::cast). A remote actor that is no longer registered there, or does
    /// not answer, gives `Ok(CallResult::SenderError)`; one too slow, `Ok(CallResult::Timeout)`.
    pub async fn call<R, F>(
        &self,
        build: F,
        timeout: Option<Duration>,
    ) -> Result<CallResult<R>, MessagingErr<M>>
    where
        R: Send + 'static,
        F: FnOnce(RpcReplyPort<R>) -> M,
    {
        let (slot, endpoint) = match &self.to {
            To::Local(actor) => return actor.call(build, timeout).await,
            To::Remote { slot, endpoint } => (slot, endpoint),
        };
        let (tx, rx) = ractor::concurrency::oneshot::<R>();
        let port: RpcReplyPort<R> = match timeout {
            Some(wait) => (tx, wait).into(),
            None => tx.into(),
        };
        let Ok(SerializedMessage::Call {
            variant,
            args,
            reply,
            metadata,
        }) = build(port).serialize()
        else {
            return Err(MessagingErr::InvalidActorType);
        };
        let timeout_ms = timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let bytes = seal(slot, variant, args, metadata, timeout_ms)?;
        let asked = endpoint
            .call(|p| EndpointMsg::Ask(bytes, p), timeout)
            .await
            .map_err(|_| MessagingErr::ChannelClosed)?;
        let answer = match asked {
            CallResult::Success(bytes) => bytes,
            CallResult::Timeout => return Ok(CallResult::Timeout),
            CallResult::SenderError => return Ok(CallResult::SenderError),
        };
        match codec::decode::<Answer>(&answer, ENVELOPE_LIMIT) {
            Ok(Answer::Reply(bytes)) => {
                // The port `serialize` made decodes the bytes into `R` and passes them to
                // `rx`; an undecodable reply drops it, which reads as no answer.
                let _ = reply.send(bytes);
                match rx.await {
                    Ok(r) => Ok(CallResult::Success(r)),
                    Err(_) => Ok(CallResult::SenderError),
                }
            }
            Ok(Answer::NotHere | Answer::Silent | Answer::Undecodable) => {
                Ok(CallResult::SenderError)
            }
            Err(e) => {
                tracing::warn!(error = %e, "registry: undecodable answer from {}", self.node);
                Ok(CallResult::SenderError)
            }
        }
    }
}

/// Encodes one envelope.
fn seal<M>(
    slot: &Slot,
    variant: String,
    args: Vec<u8>,
    metadata: Option<Vec<u8>>,
    timeout_ms: Option<u64>,
) -> Result<Vec<u8>, MessagingErr<M>> {
    let envelope = Envelope {
        slot: slot.clone(),
        variant,
        args,
        metadata,
        timeout_ms,
    };
    codec::encode(&envelope, ENVELOPE_LIMIT).map_err(|_| MessagingErr::InvalidActorType)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer_to(local: &LocalClaims, bytes: &[u8]) -> Answer {
        let (tx, rx) = ractor::concurrency::oneshot::<Vec<u8>>();
        ask(local, bytes, tx.into());
        let bytes = rx.await.expect("an answer");
        codec::decode(&bytes, ENVELOPE_LIMIT).expect("a decodable answer")
    }

    fn slot() -> Slot {
        Slot::Name {
            name: "svc".into(),
            node: "b".into(),
            incarnation: 7,
            id: 1,
        }
    }

    /// Bytes from the network that are not an envelope get a typed answer, and a cast of
    /// them is dropped; nothing panics.
    #[tokio::test]
    async fn garbage_is_answered_undecodable_and_casts_of_it_dropped() {
        let local = LocalClaims::default();
        for bytes in [&b""[..], b"\x01", b"\xff\xff\xff\xff", b"\x01\x05hello"] {
            assert!(matches!(
                answer_to(&local, bytes).await,
                Answer::Undecodable
            ));
            deliver(&local, bytes);
        }
    }

    /// A call for a claim this node does not hold is answered at once.
    #[tokio::test]
    async fn a_claim_not_held_here_is_answered_not_here() {
        let local = LocalClaims::default();
        let bytes = seal::<()>(&slot(), "Echo".into(), vec![], None, Some(1000)).expect("seal");
        assert!(matches!(answer_to(&local, &bytes).await, Answer::NotHere));
    }
}
