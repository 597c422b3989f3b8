//! What arrives from the network: arbitrary bytes never panic and change nothing; the
//! message format is pinned by a golden vector.

use crate::clock::Timestamp;
use crate::codec::{self, CodecError, WIRE_VERSION};
use crate::crdt::{AwLwwMap, DotFun, Lww, ReplicaId};
use crate::merkle::Digest;
use crate::sync::message::Message;
use crate::sync::{SyncConfig, SyncError, SyncState};
use proptest::prelude::*;

type Map = AwLwwMap<String, Vec<u8>>;

fn replica() -> SyncState<Map, u8> {
    let mut s = SyncState::new(
        ReplicaId::new(9),
        1,
        Map::new(),
        SyncConfig::small_messages(4096),
    );
    s.set_neighbours([1, 2]);
    for i in 0..20 {
        s.mutate(|m, id| m.put(id, Timestamp::new(i, 0), format!("k{i}"), vec![i as u8; 8]));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Garbage, truncated frames and random payloads behind a valid version byte are refused
    /// (or, if they happen to decode, handled) without a panic; a refusal changes nothing.
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), versioned in any::<bool>()) {
        if versioned && !bytes.is_empty() {
            bytes[0] = WIRE_VERSION;
        }
        let mut s = replica();
        let (root, len) = (s.root(), s.crdt().len());
        if s.handle_message(&1, &bytes).is_err() {
            prop_assert_eq!(s.root(), root);
            prop_assert_eq!(s.crdt().len(), len);
            prop_assert_eq!(s.stats().rejected_messages, 1);
        }
    }
}

#[test]
fn oversized_future_and_foreign_frames_are_refused_and_counted() {
    let mut s = replica();
    let root = s.root();
    let big = vec![WIRE_VERSION; 5000];
    assert!(matches!(
        s.handle_message(&1, &big),
        Err(SyncError::Codec(CodecError::FrameTooLarge { .. }))
    ));
    let future = [WIRE_VERSION + 1, 0, 0];
    assert!(matches!(
        s.handle_message(&1, &future),
        Err(SyncError::Codec(CodecError::UnknownVersion { .. }))
    ));
    let digest = codec::encode(
        &Message::<String, DotFun<Lww<Vec<u8>>>>::Digest {
            root: Digest(1),
            ctx_hash: 2,
        },
        64,
    )
    .unwrap();
    assert_eq!(
        s.handle_message(&7, &digest),
        Err(SyncError::UnknownNeighbour)
    );
    assert_eq!(s.stats().rejected_messages, 3);
    assert_eq!(s.root(), root);
    // A Merkle path outside the tree's shape is refused before anything is touched.
    let bad_path = codec::encode(
        &Message::<String, DotFun<Lww<Vec<u8>>>>::Nodes {
            nodes: vec![(crate::merkle::NodePath { level: 9, index: 0 }, vec![])],
        },
        4096,
    )
    .unwrap();
    assert!(matches!(
        s.handle_message(&1, &bad_path),
        Err(SyncError::Merkle(_))
    ));
}

/// The wire format of a digest message, pinned: if this changes, the format changed, and
/// `WIRE_VERSION` must be bumped rather than this vector edited.
#[test]
fn golden_digest_message() {
    let msg = Message::<String, DotFun<Lww<Vec<u8>>>>::Digest {
        root: Digest(0x0102_0304_0506_0708),
        ctx_hash: 300,
    };
    // version 1, variant 2 (Digest), then LEB128 varints of the root and the context hash
    // (derived independently of the encoder).
    let bytes = codec::encode(&msg, 64).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0102888e98a8c0e0808101ac02");
}

/// The limit a replica announces, pinned like the digest: variant 7 (Hello, after the seven of version 1.0), LEB128 of
/// 2,000, then `false`.
#[test]
fn golden_hello_message() {
    let msg = Message::<String, DotFun<Lww<Vec<u8>>>>::Hello {
        limit: 2_000,
        reply: false,
    };
    let bytes = codec::encode(&msg, 64).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0107d00f00");
}

/// A replica that refuses a message for its size tells the sender its limit, and a sender
/// never sends a neighbour more than the limit it announced.
#[test]
fn a_message_over_the_limit_is_answered_with_the_limit() {
    let config = SyncConfig {
        max_sync_size: 1_000,
        ..SyncConfig::default()
    };
    let mut small: SyncState<Map, u8> = SyncState::new(ReplicaId::new(1), 1, Map::new(), config);
    small.set_neighbours([2]);
    // It greets a new neighbour with its limit at once.
    let greeting = small.poll_transmit().expect("a hello");
    let msg: Message<String, DotFun<Lww<Vec<u8>>>> = codec::decode(&greeting.bytes, 64).unwrap();
    assert!(matches!(
        msg,
        Message::Hello {
            limit: 1_000,
            reply: false
        }
    ));
    let big = vec![0u8; 5_000];
    assert!(small.handle_message(&2, &big).is_err());
    let hello = small.poll_transmit().expect("an answer");
    let msg: Message<String, DotFun<Lww<Vec<u8>>>> = codec::decode(&hello.bytes, 64).unwrap();
    assert!(matches!(
        msg,
        Message::Hello {
            limit: 1_000,
            reply: true
        }
    ));
    // The sender, told, keeps every message to it under 1,000 bytes.
    let mut large = replica();
    large.set_neighbours([1]);
    large.handle_message(&1, &hello.bytes).unwrap();
    for i in 0..200 {
        large.mutate(|m, id| {
            m.put(
                id,
                crate::clock::Timestamp::new(i, 0),
                format!("key{i}"),
                vec![1; 30],
            )
        });
    }
    for _ in 0..3 {
        large.handle_tick();
        while let Some(t) = large.poll_transmit() {
            assert!(t.bytes.len() <= 1_000, "{} bytes", t.bytes.len());
        }
    }
}

/// The runtime moves these into actors and across threads (tokio's `async_send_sync` idea).
#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SyncState<Map, String>>();
    send_sync::<Map>();
    send_sync::<crate::crdt::OrMap<String, crate::crdt::MvRegister<String>>>();
    send_sync::<crate::crdt::CausalContext>();
    send_sync::<SyncError>();
}

/// A neighbour may send a full state instead of a keyed delta (a `mutate` closure can return
/// one). It can remove keys it does not list; those removals must still be reported.
#[test]
fn a_full_state_delta_reports_the_keys_it_removed() {
    use crate::crdt::Embeddable;
    let mut s = replica();
    let mut full = s.crdt().clone();
    full.remove("k3");
    assert!(!full.as_causal().is_keyed());
    let msg = Message::Deltas {
        epoch: 5,
        first: 1,
        last: 1,
        deltas: vec![crate::sync::message::WireDelta::pack(
            full.clone().into_causal(),
        )],
    };
    let bytes = codec::encode(&msg, 4096).unwrap();
    s.handle_message(&1, &bytes).unwrap();
    assert_eq!(s.crdt().get("k3"), None);
    assert_eq!(s.crdt(), &full);
    let mut reported = Vec::new();
    while let Some(event) = s.poll_event() {
        if let crate::sync::SyncEvent::StoresChanged(changes) = event {
            reported.extend(changes.into_keys());
        }
    }
    assert!(
        reported.contains(&"k3".to_string()),
        "reported {reported:?}"
    );
    let rebuilt: SyncState<Map, u8> =
        SyncState::new(ReplicaId::new(9), 2, full.clone(), SyncConfig::default());
    assert_eq!(s.root(), rebuilt.root());
}
