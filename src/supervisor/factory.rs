//! Child kinds: how a node starts a child of a given kind from its serialized arguments.

use super::spec::ChildId;
use ractor::{ActorCell, ActorProcessingErr};
use std::future::Future;
use std::pin::Pin;

/// What a factory is given to start one child.
#[derive(Debug, Clone)]
pub struct ChildContext {
    /// The child's id.
    pub id: ChildId,
    /// The spec's arguments.
    pub args: Vec<u8>,
    /// The node it starts on (this one).
    pub node: String,
}

/// The future a [`ChildFactory`] returns.
pub type StartFuture = Pin<Box<dyn Future<Output = Result<ActorCell, ActorProcessingErr>> + Send>>;

/// Starts children of one kind. Register one per kind, under the same name, on every node
/// ([`SupervisorOptions::kind`](super::SupervisorOptions::kind)).
///
/// A factory spawns a local actor and returns its cell. It must not link the actor to
/// anything that would restart it on its own: the supervisor watches the actor (a ractor
/// monitor) and applies the spec's restart policy. An error counts as a failed start toward
/// the restart intensity.
///
/// Any `Fn(ChildContext) -> impl Future<Output = Result<ActorCell, ActorProcessingErr>>` is
/// a factory.
pub trait ChildFactory: Send + Sync + 'static {
    /// Starts one child.
    fn start(&self, ctx: ChildContext) -> StartFuture;
}

impl<F, Fut> ChildFactory for F
where
    F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ActorCell, ActorProcessingErr>> + Send + 'static,
{
    fn start(&self, ctx: ChildContext) -> StartFuture {
        Box::pin(self(ctx))
    }
}
