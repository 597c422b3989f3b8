//! In-process tests of two Agents wired to each other (the real transport: `tests/agent.rs`).

use super::*;
use crate::replica::testing::wire;
use serde::Deserialize;
use std::collections::BTreeMap;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Limits {
    max_conns: u32,
    timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Config {
    name: String,
    limits: Limits,
    tenants: BTreeMap<String, u32>,
}

/// The next version of `Config`: one more field, with a serde default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ConfigV2 {
    name: String,
    limits: Limits,
    tenants: BTreeMap<String, u32>,
    #[serde(default)]
    region: Option<String>,
}

fn initial() -> Config {
    Config {
        name: "svc".into(),
        limits: Limits {
            max_conns: 10,
            timeout_ms: 100,
        },
        tenants: BTreeMap::new(),
    }
}

fn options() -> ReplicaOptions {
    ReplicaOptions::new("config").sync_interval(Duration::from_millis(5))
}

async fn pair() -> (Agent<Config>, Agent<Config>) {
    let a = Agent::start_local(options(), initial()).await.unwrap();
    let b = Agent::start_local(options(), initial()).await.unwrap();
    wire(a.replica(), "a", b.replica(), "b");
    (a, b)
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn the_initial_value_shows_until_written_and_is_never_written() {
    let a = Agent::start_local(options(), initial()).await.unwrap();
    assert_eq!(a.get().unwrap(), initial());
    assert!(a.replica().to_map().is_empty(), "defaults are not writes");
    a.update(|c| c.limits.max_conns = 20).await.unwrap();
    let stored = a.replica().to_map();
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        ["/limits/max_conns"],
        "only the changed field is written"
    );
    assert_eq!(a.get().unwrap().limits.max_conns, 20);
    a.stop().await.unwrap();
}

/// The seed's `Aviato.Agent` loses one of two concurrent updates of different fields.
#[tokio::test]
async fn concurrent_updates_of_different_fields_both_survive() {
    let (a, b) = pair().await;
    let (ra, rb) = tokio::join!(
        a.update(|c| c.limits.max_conns = 500),
        b.update(|c| c.limits.timeout_ms = 900)
    );
    ra.unwrap();
    rb.unwrap();
    let want = Limits {
        max_conns: 500,
        timeout_ms: 900,
    };
    until("both fields on both nodes", || {
        a.get().unwrap().limits == want && b.get().unwrap().limits == want
    })
    .await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_removed_map_entry_stays_removed_and_the_same_field_has_one_winner() {
    let (a, b) = pair().await;
    a.update(|c| {
        c.tenants.insert("t1".into(), 1);
        c.tenants.insert("t2".into(), 2);
    })
    .await
    .unwrap();
    until("tenants on b", || b.get().unwrap().tenants.len() == 2).await;
    b.update(|c| {
        c.tenants.remove("t1");
    })
    .await
    .unwrap();
    until("removal on a", || {
        !a.get().unwrap().tenants.contains_key("t1")
    })
    .await;
    // One field written on both: the same winner everywhere.
    let (ra, rb) = tokio::join!(
        a.update(|c| c.name = "from-a".into()),
        b.update(|c| c.name = "from-b".into())
    );
    ra.unwrap();
    rb.unwrap();
    until("one winner", || {
        let (x, y) = (a.get().unwrap(), b.get().unwrap());
        x == y && (x.name == "from-a" || x.name == "from-b")
    })
    .await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// A node with the older type never erases the newer type's field, and the newer node sees
/// the older node's changes.
#[tokio::test]
async fn rolling_upgrade_keeps_the_new_field() {
    let old = Agent::start_local(options(), initial()).await.unwrap();
    let new: Agent<ConfigV2> = Agent::start_local(
        options(),
        ConfigV2 {
            name: "svc".into(),
            limits: initial().limits,
            tenants: BTreeMap::new(),
            region: None,
        },
    )
    .await
    .unwrap();
    wire(old.replica(), "old", new.replica(), "new");
    new.update(|c| c.region = Some("eu".into())).await.unwrap();
    until("region reaches the old node's replica", || {
        old.replica().to_map().contains_key("/region")
    })
    .await;
    old.update(|c| c.limits.max_conns = 77).await.unwrap();
    old.update(|c| c.name = "renamed".into()).await.unwrap();
    until("old node's changes on the new node", || {
        let v = new.get().unwrap();
        v.limits.max_conns == 77 && v.name == "renamed"
    })
    .await;
    assert_eq!(new.get().unwrap().region.as_deref(), Some("eu"));
    old.stop().await.unwrap();
    new.stop().await.unwrap();
}

#[tokio::test]
async fn wait_until_and_subscribe_see_remote_changes() {
    let (a, b) = pair().await;
    let mut changes = b.subscribe();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_until(|c| c.tenants.contains_key("ready"), DEADLINE)
                .await
        })
    };
    a.update(|c| {
        c.tenants.insert("ready".into(), 1);
    })
    .await
    .unwrap();
    let seen = waiter.await.unwrap().unwrap();
    assert_eq!(seen.tenants.get("ready"), Some(&1));
    let change = tokio::time::timeout(DEADLINE, changes.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The new entry, and the empty-map leaf it replaced.
    assert!(
        change.fields.contains(&"/tenants/ready".to_string()),
        "{:?}",
        change.fields
    );
    assert_eq!(change.value.tenants.get("ready"), Some(&1));
    // A condition that never holds times out with a typed error.
    let err = b
        .wait_until(|c| c.name == "never", Duration::from_millis(50))
        .await;
    assert!(matches!(err, Err(AgentError::Timeout(_))));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_field_too_large_is_refused_and_nothing_is_written() {
    let small = ReplicaOptions::new("config")
        .sync_interval(Duration::from_millis(5))
        .max_sync_size(4_096);
    let a = Agent::start_local(small, initial()).await.unwrap();
    let err = a
        .update(|c| {
            c.limits.max_conns = 1;
            c.name = "x".repeat(10_000);
        })
        .await;
    assert!(matches!(
        err,
        Err(AgentError::Replica(ReplicaError::TooLarge { .. }))
    ));
    assert_eq!(
        a.get().unwrap(),
        initial(),
        "no field of the update applied"
    );
    a.stop().await.unwrap();
}

#[tokio::test]
async fn a_value_that_does_not_decode_is_a_typed_error_and_loses_nothing() {
    let a = Agent::start_local(options(), initial()).await.unwrap();
    // Another version wrote a string where this one expects a number.
    a.replica()
        .put("/limits/max_conns".into(), Leaf::Value("\"many\"".into()))
        .await
        .unwrap();
    assert!(matches!(a.get(), Err(AgentError::Decode(_))));
    assert!(matches!(
        a.update(|c| c.name = "x".into()).await,
        Err(AgentError::Decode(_))
    ));
    assert_eq!(
        a.replica().get("/limits/max_conns"),
        Some(Leaf::Value("\"many\"".into())),
        "the state is kept"
    );
    a.stop().await.unwrap();
}
