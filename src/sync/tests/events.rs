//! What the protocol tells the runtime: which stores changed (with what they held before, when
//! asked), that the context grew, and the newest remote timestamp — decided here, so the
//! runtime only stores, notifies and moves its clock.

use crate::clock::Timestamp;
use crate::crdt::{AwLwwMap, DotFun, Lww, ReplicaId};
use crate::sync::{SyncConfig, SyncEvent, SyncState};

type Map = AwLwwMap<String, u32>;
type Events = Vec<SyncEvent<String, DotFun<Lww<u32>>>>;

fn newest(store: &DotFun<Lww<u32>>) -> Option<Timestamp> {
    store.iter().map(|(_, lww)| lww.ts).max()
}

fn replica(id: u64, neighbour: u8) -> SyncState<Map, u8> {
    let mut s = SyncState::new(ReplicaId::new(id), id, Map::new(), SyncConfig::default());
    s.set_neighbours([neighbour]);
    s
}

/// Ticks both and carries every message until nothing is left to send; returns `b`'s events.
fn exchange(a: &mut SyncState<Map, u8>, b: &mut SyncState<Map, u8>) -> Events {
    let mut events = Vec::new();
    for _ in 0..20 {
        a.handle_tick();
        b.handle_tick();
        for _ in 0..20 {
            let to_b: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
            let to_a: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
            if to_a.is_empty() && to_b.is_empty() {
                break;
            }
            for t in to_b {
                b.handle_message(&0, &t.bytes).expect("accepted");
            }
            for t in to_a {
                a.handle_message(&1, &t.bytes).expect("accepted");
            }
        }
    }
    while a.poll_event().is_some() {}
    events.extend(std::iter::from_fn(|| b.poll_event()));
    events
}

fn changed_keys(events: &Events) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::StoresChanged(c) => Some(c.keys().to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_remote_write_reports_its_key_the_context_and_its_timestamp() {
    let (mut a, mut b) = (replica(1, 1), replica(2, 0));
    b.report_timestamps(newest);
    exchange(&mut a, &mut b);
    let ts = Timestamp::new(1_000, 3);
    a.mutate(|m, id| m.put(id, ts, "k".to_string(), 7));
    let events = exchange(&mut a, &mut b);
    assert_eq!(changed_keys(&events), ["k"]);
    assert!(events.contains(&SyncEvent::ContextGrew), "{events:?}");
    assert!(
        events.contains(&SyncEvent::RemoteTimestamp(ts)),
        "{events:?}"
    );
    // Settled: no more events (the digests that keep flowing change nothing).
    assert_eq!(exchange(&mut a, &mut b), Vec::new());
}

#[test]
fn without_a_timestamp_reader_no_timestamps_are_reported() {
    let (mut a, mut b) = (replica(1, 1), replica(2, 0));
    exchange(&mut a, &mut b);
    a.mutate(|m, id| m.put(id, Timestamp::new(5, 0), "k".to_string(), 1));
    let events = exchange(&mut a, &mut b);
    assert_eq!(changed_keys(&events), ["k"]);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SyncEvent::RemoteTimestamp(_)))
    );
}

#[test]
fn tracked_changes_carry_what_each_key_held_before() {
    let (mut a, mut b) = (replica(1, 1), replica(2, 0));
    b.track_previous(true);
    exchange(&mut a, &mut b);
    a.mutate(|m, id| m.put(id, Timestamp::new(1, 0), "k".to_string(), 1));
    let first = exchange(&mut a, &mut b);
    a.mutate(|m, id| m.put(id, Timestamp::new(2, 0), "k".to_string(), 2));
    let second = exchange(&mut a, &mut b);
    let previous = |events: Events| -> Vec<(String, Option<u32>)> {
        events
            .into_iter()
            .filter_map(|e| match e {
                SyncEvent::StoresChanged(c) => Some(c.into_previous().expect("tracked")),
                _ => None,
            })
            .flatten()
            .map(|(k, store)| {
                let value = store.and_then(|s| s.iter().map(|(_, l)| l.value).max());
                (k, value)
            })
            .collect()
    };
    assert_eq!(previous(first), [("k".to_string(), None)]);
    assert_eq!(previous(second), [("k".to_string(), Some(1))]);
}

/// A message already seen changes nothing, so it reports nothing: the runtime must not store
/// or notify for it.
#[test]
fn a_duplicate_message_reports_nothing() {
    let (mut a, mut b) = (replica(1, 1), replica(2, 0));
    exchange(&mut a, &mut b);
    a.mutate(|m, id| m.put(id, Timestamp::new(1, 0), "k".to_string(), 1));
    a.handle_tick();
    let sent: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    for t in &sent {
        b.handle_message(&0, &t.bytes).expect("accepted");
    }
    assert!(!changed_keys(&std::iter::from_fn(|| b.poll_event()).collect()).is_empty());
    for t in &sent {
        b.handle_message(&0, &t.bytes).expect("accepted");
    }
    assert_eq!(b.poll_event(), None);
}
