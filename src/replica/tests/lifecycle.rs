//! A replica's life: its actor dying, its supervisor, its last handle dropped, its name and
//! storage, and writes that wait for the neighbours.

use super::super::actor::ReplicaMsg;
use super::*;
use crate::storage::{RedbConfig, RedbStorage};
use ractor::{Actor, ActorProcessingErr, ActorStatus, SupervisionEvent};
use tokio::sync::mpsc;

async fn until_stopped(cell: &ractor::ActorCell) {
    until("the actor stopped", || {
        cell.get_status() == ActorStatus::Stopped
    })
    .await;
}

#[tokio::test]
async fn writes_fail_with_stopped_once_the_actor_is_killed_and_never_hang() {
    let kv = Kv::start_local(options("kv").storage(MemoryStorage::new()))
        .await
        .unwrap();
    kv.put("before", "1").await.unwrap();
    let actor = kv.actor();
    actor.kill();
    until_stopped(&actor).await;
    for r in [
        timeout(DEADLINE, kv.put("after", "2")).await,
        timeout(DEADLINE, kv.delete("before")).await,
        timeout(DEADLINE, kv.mutate(|m, _, _| m.remove("before"))).await,
    ] {
        assert!(matches!(r, Ok(Err(ReplicaError::Stopped))), "{r:?}");
    }
    assert_eq!(kv.get("after"), None, "a refused write is not applied");
    assert_eq!(
        kv.get("before").as_deref(),
        Some("1"),
        "reads keep the last state"
    );
}

/// A supervisor that reports what it is told.
struct Supervisor(mpsc::UnboundedSender<String>);

impl Actor for Supervisor {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ractor::ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle_supervisor_evt(
        &self,
        _: ractor::ActorRef<()>,
        event: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let kind = match event {
            SupervisionEvent::ActorTerminated(..) => "terminated",
            SupervisionEvent::ActorFailed(..) => "failed",
            _ => "other",
        };
        let _ = self.0.send(kind.to_string());
        Ok(())
    }
}

#[tokio::test]
async fn a_replica_linked_to_a_supervisor_reports_its_end_to_it() {
    let (tx, mut events) = mpsc::unbounded_channel();
    let (supervisor, _join) = Actor::spawn(None, Supervisor(tx), ()).await.unwrap();
    let kv = Kv::start_local(options("kv").supervisor(supervisor.get_cell()))
        .await
        .unwrap();
    kv.put("k", "v").await.unwrap();
    kv.actor().stop(Some("maintenance".into()));
    // (It is told of the start first.)
    let mut event = None;
    while event.as_deref().is_none_or(|e| e == "other") {
        event = timeout(DEADLINE, events.recv()).await.unwrap();
    }
    assert_eq!(event.as_deref(), Some("terminated"));
    let r = timeout(DEADLINE, kv.put("k", "w")).await;
    assert!(matches!(r, Ok(Err(ReplicaError::Stopped))), "{r:?}");
    supervisor.stop(None);
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_replica_and_stores_its_writes() {
    let store = MemoryStorage::new();
    let kv = Kv::start_local(options("kv").storage(store.clone()).ack(Ack::Applied))
        .await
        .unwrap();
    let clone = kv.clone();
    let actor = kv.actor();
    let mut updates = kv.subscribe();
    kv.put("k", "v").await.unwrap();
    drop(kv);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !matches!(
            actor.get_status(),
            ActorStatus::Stopping | ActorStatus::Stopped
        ),
        "a clone still holds it"
    );
    clone.put("k2", "v2").await.unwrap();
    drop(clone);
    until_stopped(&actor).await;
    // The subscription ends rather than waiting forever (after the diffs it had queued).
    assert!(matches!(updates.recv().await, Some(Update::Diffs(_))));
    assert!(matches!(updates.recv().await, Some(Update::Diffs(_))));
    assert_eq!(timeout(DEADLINE, updates.recv()).await.unwrap(), None);
    // The write made it to storage before the replica went.
    let again = Kv::start_local(options("kv").storage(store)).await.unwrap();
    assert_eq!(again.get("k").as_deref(), Some("v"));
    assert_eq!(again.get("k2").as_deref(), Some("v2"));
}

#[tokio::test]
async fn the_redb_option_names_the_file_after_the_replica_and_restarts_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::start_local(options("settings").redb(dir.path(), RedbConfig::durable()))
        .await
        .unwrap();
    kv.put("colour", "blue").await.unwrap();
    let id = kv.id();
    kv.stop().await.unwrap();
    assert!(dir.path().join("settings.redb").exists());
    let again = Kv::start_local(options("settings").redb(dir.path(), RedbConfig::durable()))
        .await
        .unwrap();
    assert_eq!(
        (again.id(), again.get("colour").as_deref()),
        (id, Some("blue"))
    );
    again.stop().await.unwrap();
}

#[tokio::test]
async fn a_store_opened_for_another_replica_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStorage::open(dir.path(), "other", RedbConfig::durable()).unwrap();
    let r = Kv::start_local(options("settings").storage(store)).await;
    assert!(
        matches!(&r, Err(ReplicaError::NameMismatch { replica, storage })
            if replica == "settings" && storage == "other"),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_write_concern_waits_for_the_neighbours_acknowledgement() {
    let a = Kv::start_local(options("kv").write_concern(WriteConcern::All(DEADLINE)))
        .await
        .unwrap();
    let b = Kv::start_local(options("kv")).await.unwrap();
    wire_pair(&a, &b);
    // Returns only once b acknowledged it: b has it then, without waiting.
    a.put("k", "v").await.unwrap();
    assert_eq!(b.get("k").as_deref(), Some("v"));
    a.until_replicated(WriteConcern::Majority(DEADLINE))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unacknowledged_write_times_out_with_a_typed_error_and_stays_applied() {
    let wait = Duration::from_millis(100);
    let a = Kv::start_local(options("kv").write_concern(WriteConcern::Majority(wait)))
        .await
        .unwrap();
    // A neighbour that never answers: its messages go nowhere.
    a.attach(Arc::new(Loop {
        from: "a".into(),
        to: Mutex::new(None),
    }));
    a.set_neighbours([s("silent")]);
    let started = Instant::now();
    let r = timeout(DEADLINE, a.put("k", "v")).await.unwrap();
    assert!(
        matches!(
            r,
            Err(ReplicaError::NotAcknowledged {
                acknowledged: 0,
                required: 1,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(started.elapsed() >= wait);
    assert_eq!(
        a.get("k").as_deref(),
        Some("v"),
        "applied locally all the same"
    );
}

/// Delivers to the actor of the named neighbour, and nowhere for other names.
struct Router {
    from: String,
    to: Vec<(String, ractor::ActorRef<ReplicaMsg>)>,
}

impl Outbox for Router {
    fn send(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        let Some((_, actor)) = self.to.iter().find(|(name, _)| name == to) else {
            return Ok(()); // lost on the way
        };
        let from = self.from.clone();
        actor
            .cast(ReplicaMsg::Inbound { from, bytes })
            .map_err(|e| ClusterError::Send {
                node: to.to_string(),
                reason: e.to_string(),
            })
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

/// With two neighbours, one of which never answers: a majority of the three nodes is this one
/// and the other, so a majority write succeeds and an all write times out.
#[tokio::test]
async fn a_majority_needs_half_the_neighbours_and_all_needs_every_one() {
    let a = Kv::start_local(options("kv")).await.unwrap();
    let b = Kv::start_local(options("kv")).await.unwrap();
    a.attach(Arc::new(Router {
        from: "a".into(),
        to: vec![(s("b"), b.actor_ref().clone())],
    }));
    b.attach(Arc::new(Router {
        from: "b".into(),
        to: vec![(s("a"), a.actor_ref().clone())],
    }));
    a.set_neighbours([s("b"), s("silent")]);
    b.set_neighbours([s("a")]);
    a.put("k", "v").await.unwrap();
    a.until_replicated(WriteConcern::Majority(DEADLINE))
        .await
        .unwrap();
    assert_eq!(b.get("k").as_deref(), Some("v"));
    let r = a
        .until_replicated(WriteConcern::All(Duration::from_millis(100)))
        .await;
    assert!(
        matches!(
            r,
            Err(ReplicaError::NotAcknowledged {
                acknowledged: 1,
                required: 2,
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_sync_size_too_small_for_any_write_is_refused_at_start() {
    let r = Kv::start_local(options("kv").max_sync_size(100)).await;
    assert!(
        matches!(
            r,
            Err(ReplicaError::SyncSizeTooSmall {
                max_sync_size: 100,
                min: 1024
            })
        ),
        "{r:?}"
    );
}
