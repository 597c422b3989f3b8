//! Sync workload for nested documents: one field changed in a 50-field, ~1 KB document costs
//! about that field on the delta path, not the document. Two converged replicas hold a few
//! documents (each under one top-level key, as an `Agent<T>` will hold its value); one changes
//! a single field; bytes on the wire (both directions) until the roots are equal again.

use crate::report::Report;
use herd::clock::{Hlc, Timestamp};
use herd::codec;
use herd::crdt::{Document, Embeddable, Path, ReplicaId};
use herd::sync::{MapCrdt, SyncConfig, SyncState};

type Doc = Document<String>;

const DOCS: usize = 100;
const FIELDS: usize = 50;
/// 50 fields of this many bytes, with their names and stamps: about 1.2 KB encoded.
const VALUE_LEN: usize = 4;

fn field(doc: usize, f: usize) -> Path {
    Path::new()
        .field(format!("doc{doc}"))
        .field(format!("field_{f:02}"))
}

fn pair<C: MapCrdt + Clone>(state: &C) -> (SyncState<C, u8>, SyncState<C, u8>) {
    let mut a = SyncState::new(
        ReplicaId::new(0x9c3f_11a2_7d04_e6b1),
        1,
        state.clone(),
        SyncConfig::default(),
    );
    let mut b = SyncState::new(
        ReplicaId::new(0x51e8_c0d7_3a9b_2f46),
        2,
        state.clone(),
        SyncConfig::default(),
    );
    a.set_neighbours([1]);
    b.set_neighbours([0]);
    // Neighbours first tell each other their message limits; measure after that.
    drive(&mut a, &mut b);
    (a, b)
}

/// Ticks both and delivers everything in order until the roots are equal and nothing is in
/// flight; returns the bytes on the wire (every message, both directions).
fn drive<C: MapCrdt>(a: &mut SyncState<C, u8>, b: &mut SyncState<C, u8>) -> u64 {
    let start = a.stats().bytes_sent + b.stats().bytes_sent;
    for _ in 0..100 {
        a.handle_tick();
        b.handle_tick();
        loop {
            let mut moved = false;
            while let Some(t) = a.poll_transmit() {
                let _ = b.handle_message(&0, &t.bytes);
                moved = true;
            }
            while let Some(t) = b.poll_transmit() {
                let _ = a.handle_message(&1, &t.bytes);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        if a.root() == b.root() && a.buffered_deltas() == 0 {
            return a.stats().bytes_sent + b.stats().bytes_sent - start;
        }
    }
    panic!("no convergence in 100 rounds");
}

pub(crate) fn sync_document(r: &mut Report) {
    let mut clock = Hlc::default();
    let writer = ReplicaId::new(0xbeef);
    let mut docs = Doc::new();
    for d in 0..DOCS {
        for f in 0..FIELDS {
            let ts = clock.now((d * FIELDS + f) as u64);
            docs.set(writer, ts, &field(d, f), "v".repeat(VALUE_LEN));
        }
    }
    let one = docs
        .as_causal()
        .store()
        .get(&herd::crdt::Segment::from("doc7"))
        .expect("doc7");
    let doc_bytes = codec::encoded_len(one).expect("encodes") as f64;
    r.record("document_encoded_bytes", doc_bytes, "bytes", None);

    let (mut a, mut b) = pair(&docs);
    let path = field(7, 23);
    let value = "w".repeat(VALUE_LEN);
    let ts: Timestamp = clock.now(1_000_000);
    a.mutate(|d, id| d.set(id, ts, &path, value.clone()));
    // The delta path's message: the first thing `a` sends after the change.
    a.handle_tick();
    let message = a.poll_transmit().expect("a delta message");
    let message_bytes = message.bytes.len() as f64;
    b.handle_message(&0, &message.bytes).expect("accepted");
    while let Some(t) = b.poll_transmit() {
        let _ = a.handle_message(&1, &t.bytes);
    }
    let bytes = message_bytes + drive(&mut a, &mut b) as f64;
    assert_eq!(b.crdt().get(&path), Some(&value));
    // The field as stored: its path and its register (dot, timestamp, value).
    let node = a.crdt().node(&path).expect("the field");
    let encoded_field = codec::encoded_len(&(&path, node)).expect("encodes") as f64;
    r.record("document_field_bytes", encoded_field, "bytes", None);
    r.record(
        "document_one_field_delta_message_bytes",
        message_bytes,
        "bytes",
        Some(encoded_field),
    );
    r.record(
        "document_one_field_until_converged_bytes",
        bytes,
        "bytes",
        Some(doc_bytes),
    );
    r.record(
        "flat_map_one_key_delta_message_bytes",
        flat_map_message(&mut clock),
        "bytes",
        Some(encoded_field),
    );
}

/// The same change in a flat map (`"doc7.field_23"` as one key): the floor a nested document
/// is compared with.
fn flat_map_message(clock: &mut Hlc) -> f64 {
    let mut map = herd::crdt::AwLwwMap::<String, String>::new();
    let writer = ReplicaId::new(0xbeef);
    for f in 0..FIELDS {
        map.put(
            writer,
            clock.now(f as u64),
            format!("doc7.field_{f:02}"),
            "v".repeat(VALUE_LEN),
        );
    }
    let (mut a, _b) = pair(&map);
    let ts = clock.now(2_000_000);
    a.mutate(|m, id| m.put(id, ts, "doc7.field_23".to_string(), "w".repeat(VALUE_LEN)));
    a.handle_tick();
    a.poll_transmit().expect("a delta message").bytes.len() as f64
}
