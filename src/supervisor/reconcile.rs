//! The reconciliation loop: one task per node that owns this node's running children and
//! re-derives, from the replicated specs, the registrations and the members, what should run
//! here. Level-triggered: it acts on the state it reads, never on the event that woke it, so
//! a lost or reordered event only delays it until the next pass (every `reconcile_interval`).

use super::intensity::Intensity;
use super::spec::{ChildId, ChildSpec, Key, Restart, Value};
use super::{ChildContext, Inner, Redistribution, SupervisorError, read_specs};
use crate::registry::{RegistrationRef, RegistryError};
use crate::replica::Update;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, SupervisionEvent,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The least time between two passes: a pass reads every spec, and events arrive by the
/// thousand while children start, so back-to-back passes would eat the CPU that heartbeats
/// need (a starved node is declared down, and its children started twice). Events only mark
/// the state dirty, so a burst of thousands of registrations costs a pass per this gap, not
/// a pass per event.
const MIN_GAP: Duration = Duration::from_millis(25);

/// Starts per pass; the rest wait for the next pass, so exits, drains and stops are
/// handled between batches and the runtime's other tasks get their turn.
const STARTS_PER_PASS: usize = 256;

/// What the handle and the watcher tell the loop.
pub(crate) enum Command {
    /// Something changed that the loop does not watch itself (a local write).
    Wake,
    /// A watched child exited.
    Exit(ActorId, Exit),
    /// Stop this node's children and place nothing here; answers the ids it stopped.
    Drain(oneshot::Sender<Vec<ChildId>>),
    /// Stop the loop (and any child still running here).
    Stop,
}

/// How a child exited.
pub(crate) enum Exit {
    /// It stopped (normal exit).
    Normal,
    /// It failed: a panic or an error in a handler.
    Failed(String),
}

/// The live nodes hosting this supervisor, this one included, sorted.
pub(crate) fn live(inner: &Inner) -> Vec<String> {
    let mut live: BTreeSet<String> = inner.specs.neighbours().into_iter().collect();
    live.insert(inner.node.clone());
    live.into_iter().collect()
}

/// The live nodes children may be placed on: not draining.
pub(crate) fn eligible(inner: &Inner, live: &[String]) -> Vec<String> {
    let draining = draining(inner);
    live.iter()
        .filter(|n| !draining.iter().any(|(d, _)| d == *n))
        .cloned()
        .collect()
}

/// Every drain mark: (node, incarnation).
fn draining(inner: &Inner) -> Vec<(String, u64)> {
    inner.specs.read(|map| {
        map.iter()
            .filter_map(|(key, _)| match key {
                Key::Draining { node, incarnation } => Some((node.clone(), *incarnation)),
                _ => None,
            })
            .collect()
    })
}

/// A child running on this node.
struct Running {
    cell: ActorCell,
    registration: RegistrationRef,
}

struct Loop {
    inner: Arc<Inner>,
    watcher: ActorRef<()>,
    local: HashMap<ChildId, Running>,
    by_actor: HashMap<ActorId, ChildId>,
    /// Children this loop stopped itself: their exit is not a failure.
    intentional: HashSet<ActorId>,
    intensity: HashMap<ChildId, Intensity>,
    draining: bool,
    dirty: bool,
    /// When the live member list last changed (or the loop started).
    members_changed: Instant,
}

/// Starts the watcher and the loop; returns the loop's command channel.
pub(crate) async fn spawn(
    inner: Arc<Inner>,
) -> Result<mpsc::UnboundedSender<Command>, SupervisorError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (watcher, _) = Actor::spawn(None, Watcher, tx.clone())
        .await
        .map_err(SupervisorError::Watcher)?;
    let state = Loop {
        inner,
        watcher,
        local: HashMap::new(),
        by_actor: HashMap::new(),
        intentional: HashSet::new(),
        intensity: HashMap::new(),
        draining: false,
        dirty: true,
        members_changed: Instant::now(),
    };
    tokio::spawn(state.run(rx));
    Ok(tx)
}

impl Loop {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut diffs = self.inner.specs.subscribe();
        let mut events = self.inner.registry.subscribe();
        // Woken by events, by a change of the neighbours, and by the next deadline (a pass
        // due, a member list becoming stable): asleep otherwise. (It used to tick every 5 ms,
        // 200 wake-ups a second on an idle node.)
        let mut neighbours = self.inner.specs.watch_neighbours();
        let mut members = Vec::new();
        let mut last_pass = Instant::now();
        let stable_after = self.inner.options.stable_after;
        let mut waiting_for_stable = false;
        let mut neighbours_changed = true;
        loop {
            if neighbours_changed {
                neighbours_changed = false;
                let now = live(&self.inner);
                if now != members {
                    members = now;
                    self.members_changed = Instant::now();
                    waiting_for_stable = true;
                }
            }
            // Act on a membership change once it has held for `stable_after`.
            if waiting_for_stable && self.members_changed.elapsed() >= stable_after {
                waiting_for_stable = false;
                self.dirty = true;
            }
            if last_pass.elapsed() >= self.inner.options.reconcile_interval {
                self.dirty = true;
            }
            if self.dirty && last_pass.elapsed() >= MIN_GAP {
                self.dirty = false;
                last_pass = Instant::now();
                self.reconcile().await;
            }
            let mut next = last_pass + self.inner.options.reconcile_interval;
            if waiting_for_stable {
                next = next.min(self.members_changed + stable_after);
            }
            if self.dirty {
                next = next.min(last_pass + MIN_GAP);
            }
            let wake_at = tokio::time::Instant::from_std(next);
            tokio::select! {
                update = diffs.recv() => match update {
                    None => break,
                    Some(Update::Diffs(_) | Update::Lagged(_)) => self.dirty = true,
                },
                Some(_) = events.recv() => self.dirty = true,
                command = commands.recv() => match command {
                    None | Some(Command::Stop) => break,
                    Some(Command::Wake) => self.dirty = true,
                    Some(Command::Exit(actor, exit)) => self.on_exit(actor, exit).await,
                    Some(Command::Drain(reply)) => {
                        self.draining = true;
                        let ids: Vec<ChildId> = self.local.keys().cloned().collect();
                        self.reconcile().await;
                        let _ = reply.send(ids);
                    }
                },
                Ok(()) = neighbours.changed() => neighbours_changed = true,
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
        let ids: Vec<ChildId> = self.local.keys().cloned().collect();
        for id in ids {
            self.stop_child(&id, "herd supervisor: stopped").await;
        }
        self.watcher.stop(None);
    }

    /// One pass: stop what must not run here, start what this node owns and runs nowhere.
    async fn reconcile(&mut self) {
        let inner = self.inner.clone();
        let me = inner.node.as_str();
        let live = live(&inner);
        let (specs, failed) = read_specs(&inner);
        // Drain marks of an earlier run of this node: it is back, place children on it again.
        for (node, incarnation) in draining(&inner) {
            if node == me && incarnation != inner.incarnation {
                let _ = inner
                    .specs
                    .delete(&Key::Draining { node, incarnation })
                    .await;
            }
        }
        let eligible = eligible(&inner, &live);
        let strategy = &inner.options.strategy;
        let quorum = strategy.has_quorum(&live);
        let wanted: HashMap<&str, &ChildSpec> = specs.iter().map(|s| (s.id.as_str(), s)).collect();
        // Placement acts only on a member list that has held for `stable_after`: a node
        // that flaps down and up (a starved heartbeat) then moves nothing, instead of
        // thousands of children being started on one side and stopped again on the heal.
        let stable = self.members_changed.elapsed() >= inner.options.stable_after;
        let passive = inner.options.redistribution == Redistribution::Passive || !stable;
        let stop: Vec<ChildId> = self
            .local
            .keys()
            .filter(|id| {
                let keep = !self.draining
                    && quorum
                    && wanted.contains_key(id.as_str())
                    && !failed.contains_key(*id)
                    && (passive || strategy.owner(id, &eligible).as_deref() == Some(me));
                !keep
            })
            .cloned()
            .collect();
        for id in stop {
            self.stop_child(&id, "herd supervisor: not placed here")
                .await;
        }
        if self.draining || !quorum || !stable {
            return;
        }
        let mut started = 0;
        for spec in specs {
            if started == STARTS_PER_PASS {
                self.dirty = true;
                break;
            }
            if failed.contains_key(&spec.id) || self.local.contains_key(&spec.id) {
                continue;
            }
            if strategy.owner(&spec.id, &eligible).as_deref() != Some(me) {
                continue;
            }
            // Runs elsewhere (a handover not finished, a passive placement, the other side
            // of a healed partition): the registry's conflict rule or the runner's own pass
            // settles it; starting here would make a second copy.
            if inner
                .registry
                .whereis(&spec.id)
                .is_some_and(|e| e.node != me)
            {
                continue;
            }
            self.start_child(spec).await;
            started += 1;
            if started % 32 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn start_child(&mut self, spec: ChildSpec) {
        let inner = self.inner.clone();
        let Some(factory) = inner.options.kinds.get(&spec.kind).cloned() else {
            // Never falls through to another node: that would be a silent placement change.
            self.mark_failed(&spec.id, format!("unknown child kind {}", spec.kind))
                .await;
            return;
        };
        let ctx = ChildContext {
            id: spec.id.clone(),
            args: spec.args.clone(),
            node: inner.node.clone(),
        };
        let cell = match factory.start(ctx).await {
            Ok(cell) => cell,
            Err(e) => {
                tracing::info!(child = %spec.id, error = %e, "supervisor: child failed to start");
                self.count_restart(&spec.id, e.to_string()).await;
                return;
            }
        };
        // Watch before anything can be missed, then check it did not already stop.
        self.watcher.get_cell().monitor(cell.clone());
        self.by_actor.insert(cell.get_id(), spec.id.clone());
        let actor = ActorRef::<()>::from(cell.clone());
        match inner.registry.register(spec.id.clone(), &actor).await {
            Ok(registration) => {
                self.local.insert(
                    spec.id.clone(),
                    Running {
                        cell: cell.clone(),
                        registration,
                    },
                );
                if matches!(
                    cell.get_status(),
                    ActorStatus::Stopped | ActorStatus::Stopping
                ) {
                    self.on_exit(cell.get_id(), Exit::Failed("stopped at start".into()))
                        .await;
                }
            }
            Err(e) => {
                // Its registration reached this node meanwhile (AlreadyRegistered), or the
                // registry refused: this copy must not run. The next pass decides again.
                if !matches!(e, RegistryError::AlreadyRegistered { .. }) {
                    tracing::warn!(child = %spec.id, error = %e, "supervisor: cannot register child");
                }
                self.intentional.insert(cell.get_id());
                cell.stop(Some("herd supervisor: registered elsewhere".into()));
            }
        }
    }

    /// Stops a child of this node on purpose (terminated, handed over, draining, no
    /// quorum): stop, then unregister, so the next owner, which waits for the registration
    /// to go, never runs a second copy while this one still runs.
    async fn stop_child(&mut self, id: &str, reason: &str) {
        let Some(run) = self.local.remove(id) else {
            return;
        };
        self.intentional.insert(run.cell.get_id());
        let timeout = self.inner.options.stop_timeout;
        // Killed only if it ignored the stop (a hung child must not block a handover
        // forever, Akka's HandOffStopper lesson); an error other than the timeout means it
        // was already stopping, and a kill would skip its `post_stop`.
        if let Err(ractor::RactorErr::Timeout) = run
            .cell
            .stop_and_wait(Some(reason.to_owned()), Some(timeout))
            .await
        {
            tracing::warn!(child = %id, "supervisor: child did not stop in time; killed");
            run.cell.kill();
        }
        let _ = self.inner.registry.unregister(&run.registration).await;
    }

    async fn on_exit(&mut self, actor: ActorId, exit: Exit) {
        let Some(id) = self.by_actor.remove(&actor) else {
            return;
        };
        if self.intentional.remove(&actor) {
            return;
        }
        // An exit of an earlier copy of this id must not take the current copy's place.
        if self
            .local
            .get(&id)
            .is_none_or(|run| run.cell.get_id() != actor)
        {
            return;
        }
        let Some(run) = self.local.remove(&id) else {
            return;
        };
        let _ = self.inner.registry.unregister(&run.registration).await;
        let me = self.inner.node.as_str();
        // Stopped by the registry because another copy holds the name (a healed
        // partition): the winner runs it, nothing to restart.
        if self
            .inner
            .registry
            .whereis(&id)
            .is_some_and(|e| e.node != me)
        {
            return;
        }
        let Some(spec) = self
            .inner
            .specs
            .get(&Key::Spec(id.clone()))
            .and_then(|v| v.to_spec(&id))
        else {
            return;
        };
        let (normal, reason) = match exit {
            Exit::Normal => (true, "stopped".to_owned()),
            Exit::Failed(why) => (false, why),
        };
        match spec.restart {
            Restart::Temporary => return self.finished(&id).await,
            Restart::Transient if normal => return self.finished(&id).await,
            _ => {}
        }
        tracing::info!(child = %id, %reason, "supervisor: child exited; restarting");
        self.count_restart(&id, reason).await;
    }

    /// A child that ended for good by its policy: its spec goes.
    async fn finished(&mut self, id: &str) {
        self.intensity.remove(id);
        let _ = self.inner.specs.delete(&Key::Spec(id.to_owned())).await;
    }

    /// Counts a restart (or failed start) toward the intensity limit; beyond it the child
    /// is marked failed, else the next pass starts it again.
    async fn count_restart(&mut self, id: &str, reason: String) {
        let options = &self.inner.options;
        let (max, window) = (options.max_restarts, options.max_seconds);
        let exceeded =
            self.intensity
                .entry(id.to_owned())
                .or_default()
                .exceeded(Instant::now(), max, window);
        if exceeded {
            tracing::warn!(child = %id, %reason, "supervisor: restart intensity exceeded; child failed");
            self.mark_failed(id, reason).await;
        } else {
            self.dirty = true;
        }
    }

    async fn mark_failed(&mut self, id: &str, reason: String) {
        self.intensity.remove(id);
        let value = Value::Failed {
            node: self.inner.node.clone(),
            reason,
        };
        if let Err(e) = self
            .inner
            .specs
            .put(Key::Failed(id.to_owned()), value)
            .await
        {
            tracing::warn!(child = %id, error = %e, "supervisor: cannot mark child failed");
        }
    }
}

/// Monitors this node's children and reports their exits to the loop.
struct Watcher;

impl Actor for Watcher {
    type Msg = ();
    type State = mpsc::UnboundedSender<Command>;
    type Arguments = mpsc::UnboundedSender<Command>;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        loop_tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(loop_tx)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        loop_tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let exit = match event {
            SupervisionEvent::ActorTerminated(cell, ..) => Some((cell.get_id(), Exit::Normal)),
            SupervisionEvent::ActorFailed(cell, error) => {
                Some((cell.get_id(), Exit::Failed(error.to_string())))
            }
            _ => None,
        };
        if let Some((actor, exit)) = exit {
            let _ = loop_tx.send(Command::Exit(actor, exit));
        }
        Ok(())
    }
}
