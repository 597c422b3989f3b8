//! Tests of both stores against the same expectations, plus redb's failure cases.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use redb::{Database, ReadableDatabase, TableDefinition};

use super::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Loads `store` into (replica id, context, entries), failing the test on any error.
fn loaded(store: &impl Storage) -> Option<(u64, Vec<u8>, Model)> {
    let snapshot = store.load().unwrap()?;
    let entries = snapshot.entries.collect::<Result<Model, _>>().unwrap();
    Some((snapshot.replica_id, snapshot.context, entries))
}

fn open(dir: &Path) -> RedbStorage {
    RedbStorage::open(dir, "replica", RedbConfig::default()).unwrap()
}

fn batch(puts: &[(&str, &str)], deletes: &[&str], context: Option<&str>) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (key, entry) in puts {
        batch.put(key.as_bytes().to_vec(), entry.as_bytes().to_vec());
    }
    for key in deletes {
        batch.delete(key.as_bytes().to_vec());
    }
    if let Some(context) = context {
        batch.set_context(context.as_bytes().to_vec());
    }
    batch
}

fn model(pairs: &[(&str, &str)]) -> Model {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// The contract every store keeps: empty, init, roundtrip, deletes, context, re-init.
fn roundtrip(store: &impl Storage) {
    assert!(loaded(store).is_none());
    assert!(matches!(
        store.apply(&batch(&[("a", "1")], &[], None)),
        Err(StorageError::NotInitialized)
    ));
    assert!(loaded(store).is_none(), "a refused batch wrote something");

    store.init(7).unwrap();
    assert_eq!(loaded(store), Some((7, vec![], Model::new())));

    store
        .apply(&batch(
            &[("a", "1"), ("b", "2"), ("c", "3")],
            &[],
            Some("ctx1"),
        ))
        .unwrap();
    store
        .apply(&batch(&[("a", "10")], &["b", "missing"], None))
        .unwrap();
    let expected = model(&[("a", "10"), ("c", "3")]);
    assert_eq!(loaded(store), Some((7, b"ctx1".to_vec(), expected.clone())));

    let snapshot = store.load().unwrap().unwrap();
    assert_eq!(snapshot.entries.size_hint(), (0, Some(2)));

    store.apply(&WriteBatch::new()).unwrap();
    store.flush().unwrap();
    assert_eq!(loaded(store), Some((7, b"ctx1".to_vec(), expected)));

    // A fresh replica forgets everything before it.
    store.init(8).unwrap();
    assert_eq!(loaded(store), Some((8, vec![], Model::new())));
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<RedbStorage>();
    send_sync::<MemoryStorage>();
    send_sync::<WriteBatch>();
    send_sync::<StorageError>();
    send::<Snapshot>();
    send::<Entries>();
    send_sync::<Box<dyn Storage>>();
}

#[test]
fn memory_roundtrip() {
    roundtrip(&MemoryStorage::new());
}

#[test]
fn redb_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    roundtrip(&open(dir.path()));
}

#[test]
fn redb_write_behind_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let config = RedbConfig::write_behind(Duration::from_millis(5));
    roundtrip(&RedbStorage::open(dir.path(), "replica", config).unwrap());
}

#[test]
fn boxed_and_shared_stores_are_stores() {
    let boxed: Box<dyn Storage> = Box::new(MemoryStorage::new());
    roundtrip(&boxed);
    roundtrip(&std::sync::Arc::new(MemoryStorage::new()));
}

#[test]
fn batch_last_call_for_a_key_wins() {
    let store = MemoryStorage::new();
    store.init(1).unwrap();
    let mut b = WriteBatch::new();
    b.delete(b"k".to_vec()).put(b"k".to_vec(), b"v".to_vec());
    b.put(b"j".to_vec(), b"v".to_vec()).delete(b"j".to_vec());
    assert_eq!(b.len(), 2);
    store.apply(&b).unwrap();
    assert_eq!(loaded(&store).unwrap().2, model(&[("k", "v")]));
    b.clear();
    assert!(b.is_empty());
}

#[test]
fn memory_restart_keeps_state_and_id() {
    let store = MemoryStorage::new();
    store.init(99).unwrap();
    store.apply(&batch(&[("x", "1")], &[], Some("c"))).unwrap();
    let restarted = store.clone();
    drop(store);
    assert_eq!(
        loaded(&restarted),
        Some((99, b"c".to_vec(), model(&[("x", "1")])))
    );
    assert_eq!(restarted.len(), 1);
    // A node that lost its data has a new, empty store.
    assert!(loaded(&MemoryStorage::new()).is_none());
}

#[test]
fn redb_restart_keeps_state_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.init(u64::MAX - 3).unwrap();
    store
        .apply(&batch(&[("x", "1"), ("y", "2")], &[], Some("c")))
        .unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        loaded(&store),
        Some((
            u64::MAX - 3,
            b"c".to_vec(),
            model(&[("x", "1"), ("y", "2")])
        ))
    );
    // Only the named replica's file was used; other names are other stores.
    let other = RedbStorage::open(dir.path(), "other", RedbConfig::default()).unwrap();
    assert!(loaded(&other).is_none());
}

#[test]
fn redb_write_behind_restart_after_drop_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    // An interval long enough that only the drop can have synced.
    let config = RedbConfig::write_behind(Duration::from_secs(3600));
    let store = RedbStorage::open(dir.path(), "replica", config.clone()).unwrap();
    store.init(5).unwrap();
    store.apply(&batch(&[("x", "1")], &[], Some("c"))).unwrap();
    drop(store);
    let store = RedbStorage::open(dir.path(), "replica", config).unwrap();
    assert_eq!(
        loaded(&store),
        Some((5, b"c".to_vec(), model(&[("x", "1")])))
    );
}

#[test]
fn redb_second_handle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let err = RedbStorage::open(dir.path(), "replica", RedbConfig::default()).unwrap_err();
    assert!(matches!(err, StorageError::AlreadyOpen { .. }), "{err:?}");
}

#[test]
fn redb_invalid_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "",
        ".hidden",
        "../escape",
        "a/b",
        "sp ace",
        &"x".repeat(201),
    ] {
        let err = RedbStorage::open(dir.path(), name, RedbConfig::default()).unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidName { .. }),
            "{name}: {err:?}"
        );
    }
    assert!(RedbStorage::open(dir.path(), "node-1.config_v2", RedbConfig::default()).is_ok());
}

/// The path [`open`] uses, for tests that tamper with the file.
fn file(dir: &Path) -> std::path::PathBuf {
    dir.join("replica.redb")
}

fn open_err(dir: &Path) -> StorageError {
    match RedbStorage::open(dir, "replica", RedbConfig::default()) {
        Ok(store) => panic!("opened a bad file: {:?}", store.load().map(|s| s.is_some())),
        Err(e) => e,
    }
}

#[test]
fn redb_garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x1234_5678_9abc_def0_u64;
    let garbage: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(file(dir.path()), &garbage).unwrap();
    let err = open_err(dir.path());
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err:?}");
    // Left untouched for inspection.
    assert!(std::fs::read(file(dir.path())).unwrap() == garbage);
}

#[test]
fn redb_short_garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(file(dir.path()), b"not a database").unwrap();
    let err = open_err(dir.path());
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err:?}");
}

#[test]
fn redb_empty_file_is_a_new_store() {
    // What a crash right after creating the file leaves.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(file(dir.path()), b"").unwrap();
    assert!(loaded(&open(dir.path())).is_none());
}

/// A store with `n` entries, closed.
fn filled(dir: &Path, n: u32) {
    let store = open(dir);
    store.init(3).unwrap();
    let mut b = WriteBatch::new();
    for i in 0..n {
        b.put(i.to_be_bytes().to_vec(), vec![i as u8; 90]);
    }
    store.apply(&b).unwrap();
}

#[test]
fn redb_truncated_file_is_corrupt() {
    for keep in [16, 300, 4096, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 2_000);
        let bytes = std::fs::read(file(dir.path())).unwrap();
        assert!(bytes.len() > keep);
        std::fs::write(file(dir.path()), &bytes[..keep]).unwrap();
        let err = open_err(dir.path());
        assert!(
            matches!(err, StorageError::Corrupt { .. }),
            "keep {keep}: {err:?}"
        );
    }
}

/// Opens and fully loads a damaged store: an error at any step is fine, a panic or a silent
/// empty start is not. Returns whether every step succeeded.
fn open_and_load(dir: &Path) -> Result<usize, StorageError> {
    let store = RedbStorage::open(dir, "replica", RedbConfig::default())?;
    let snapshot = store.load()?.ok_or(StorageError::NotInitialized)?;
    snapshot
        .entries
        .map(|e| e.map(|_| ()))
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.len())
}

#[test]
fn redb_truncated_tail_is_an_error() {
    for cut in [1, 4096, 16_384] {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), 2_000);
        let bytes = std::fs::read(file(dir.path())).unwrap();
        std::fs::write(file(dir.path()), &bytes[..bytes.len() - cut]).unwrap();
        match open_and_load(dir.path()) {
            // Cutting free space at the end loses nothing.
            Ok(n) => assert_eq!(n, 2_000, "cut {cut}: entries lost silently"),
            Err(e) => assert!(
                matches!(e, StorageError::Corrupt { .. }),
                "cut {cut}: {e:?}"
            ),
        }
    }
}

#[test]
fn redb_damaged_pages_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 2_000);
    let original = std::fs::read(file(dir.path())).unwrap();
    for offset in (0..original.len()).step_by(original.len() / 16 + 1) {
        let mut bytes = original.clone();
        for b in &mut bytes[offset..(offset + 64).min(original.len())] {
            *b ^= 0x5a;
        }
        std::fs::write(file(dir.path()), &bytes).unwrap();
        match open_and_load(dir.path()) {
            Ok(n) => assert_eq!(n, 2_000, "offset {offset}: entries lost silently"),
            Err(e) => assert!(
                matches!(
                    e,
                    StorageError::Corrupt { .. } | StorageError::Foreign { .. }
                ),
                "offset {offset}: {e:?}"
            ),
        }
    }
}

#[test]
fn redb_wrong_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 3);
    {
        let db = Database::create(file(dir.path())).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("herd.meta");
            let mut meta = txn.open_table(meta).unwrap();
            meta.insert("format_version", &999u32.to_le_bytes()[..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let err = open_err(dir.path());
    assert!(
        matches!(
            err,
            StorageError::UnsupportedFormat {
                found: 999,
                supported: FORMAT_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn redb_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(file(dir.path())).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: TableDefinition<'_, u64, u64> = TableDefinition::new("users");
            txn.open_table(table).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = open_err(dir.path());
    assert!(matches!(err, StorageError::Foreign { .. }), "{err:?}");
    // Its data is left as it was, and herd added no table.
    let db = Database::create(file(dir.path())).unwrap();
    let txn = db.begin_read().unwrap();
    assert_eq!(txn.list_tables().unwrap().count(), 1);
    let table: TableDefinition<'_, u64, u64> = TableDefinition::new("users");
    let table = txn.open_table(table).unwrap();
    assert_eq!(table.get(1).unwrap().map(|v| v.value()), Some(2));
}

#[test]
fn redb_meta_of_other_types_is_foreign() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(file(dir.path())).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: TableDefinition<'_, u64, u64> = TableDefinition::new("herd.meta");
            txn.open_table(table).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = open_err(dir.path());
    assert!(matches!(err, StorageError::Foreign { .. }), "{err:?}");
}

#[test]
fn redb_meta_without_version_is_foreign() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(file(dir.path())).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("herd.meta");
            txn.open_table(meta)
                .unwrap()
                .insert("other", &b"x"[..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let err = open_err(dir.path());
    assert!(matches!(err, StorageError::Foreign { .. }), "{err:?}");
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Step {
    Apply(Vec<(u8, Option<Vec<u8>>)>, Option<Vec<u8>>),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (
            prop::collection::vec(
                (0u8..16, prop::option::of(prop::collection::vec(any::<u8>(), 0..8))),
                0..6
            ),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..4)),
        )
            .prop_map(|(changes, context)| Step::Apply(changes, context)),
        1 => Just(Step::Restart),
    ]
}

/// Runs `steps` on a store and on a model; the loaded state must match after every step.
fn check_model(steps: &[Step], mut store: impl FnMut(bool) -> Box<dyn Storage>) {
    let mut current = store(false);
    current.init(11).unwrap();
    let mut entries = Model::new();
    let mut context = Vec::new();
    for step in steps {
        match step {
            Step::Apply(changes, new_context) => {
                let mut b = WriteBatch::new();
                for (key, entry) in changes {
                    // A leading key byte of 0 and keys of different lengths test byte order.
                    let key = vec![0; usize::from(*key % 3)]
                        .into_iter()
                        .chain([*key])
                        .collect::<Vec<u8>>();
                    match entry {
                        Some(entry) => {
                            b.put(key.clone(), entry.clone());
                        }
                        None => {
                            b.delete(key.clone());
                        }
                    }
                }
                // The model applies the batch's net effect, as the batch promises.
                for (key, entry) in b.changes() {
                    match entry {
                        Some(entry) => entries.insert(key.to_vec(), entry.to_vec()),
                        None => entries.remove(key),
                    };
                }
                if let Some(new_context) = new_context {
                    b.set_context(new_context.clone());
                    context.clone_from(new_context);
                }
                current.apply(&b).unwrap();
            }
            Step::Restart => {
                drop(current);
                current = store(true);
            }
        }
        let snapshot = current.load().unwrap().unwrap();
        assert_eq!(snapshot.replica_id, 11);
        assert_eq!(snapshot.context, context);
        let got = snapshot.entries.collect::<Result<Vec<_>, _>>().unwrap();
        let want: Vec<_> = entries.clone().into_iter().collect();
        assert_eq!(got, want, "entries or their order differ");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn memory_matches_a_btreemap(steps in prop::collection::vec(step(), 0..24)) {
        let shared = MemoryStorage::new();
        check_model(&steps, |_| Box::new(shared.clone()));
    }

    #[test]
    fn redb_matches_a_btreemap(steps in prop::collection::vec(step(), 0..24)) {
        let dir = tempfile::tempdir().unwrap();
        // Write-behind: the same commits without an fsync each, so the test stays fast; the
        // drop at each restart makes them durable.
        let config = RedbConfig::write_behind(Duration::from_millis(2));
        check_model(&steps, |_| {
            Box::new(RedbStorage::open(dir.path(), "replica", config.clone()).unwrap())
        });
    }
}

/// Environment variables that turn [`crash_child`] on, set by [`crash_after`].
const CRASH_DIR: &str = "HERD_STORAGE_CRASH_DIR";
const CRASH_MODE: &str = "HERD_STORAGE_CRASH_MODE";

/// Not a test on its own: run by [`crash_after`] in a child process, which it aborts (no
/// destructors, no final sync) right after 20 batches of one entry each were applied.
#[test]
#[ignore = "run as a child process by the crash tests"]
fn crash_child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CRASH_DIR), std::env::var(CRASH_MODE)) else {
        return;
    };
    let config = match mode.as_str() {
        "durable" => RedbConfig::durable(),
        _ => RedbConfig::write_behind(Duration::from_secs(3600)),
    };
    let store = RedbStorage::open(Path::new(&dir), "replica", config).unwrap();
    store.init(17).unwrap();
    for i in 0..20u32 {
        if mode == "flush_then_more" && i == 10 {
            store.flush().unwrap();
        }
        store
            .apply(&batch(
                &[(&format!("k{i:02}"), "v")],
                &[],
                Some(&i.to_string()),
            ))
            .unwrap();
    }
    std::process::abort();
}

/// Runs [`crash_child`] in `mode` and returns what a restart loads: the entry count.
fn crash_after(mode: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "storage::tests::crash_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_DIR, dir.path())
        .env(CRASH_MODE, mode)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child did not crash");
    let (id, context, entries) = loaded(&open(dir.path())).expect("init was durable");
    assert_eq!(id, 17);
    // Whatever survived is a prefix of the batches, each whole, with its own context.
    let n = entries.len();
    let want: Model = (0..n)
        .map(|i| (format!("k{i:02}").into_bytes(), b"v".to_vec()))
        .collect();
    assert_eq!(entries, want);
    let want_context = n.checked_sub(1).map(|i| i.to_string()).unwrap_or_default();
    assert_eq!(context, want_context.into_bytes());
    n
}

#[test]
fn crash_loses_nothing_acknowledged_when_durable() {
    assert_eq!(crash_after("durable"), 20);
}

#[test]
fn crash_loses_unsynced_batches_when_write_behind() {
    // No sync ran after init: a crash of the process alone loses every batch.
    assert_eq!(crash_after("write_behind"), 0);
    // A flush made the first ten durable; the ten after it are lost.
    assert_eq!(crash_after("flush_then_more"), 10);
}
