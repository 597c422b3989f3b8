//! [`RedbStorage`]: the durable embedded default, on redb.
//!
//! # Why redb
//!
//! [redb](https://docs.rs/redb) is pure Rust (no C toolchain, no `unsafe` FFI to audit), keeps
//! copy-on-write B-trees with checksummed commits so a crash leaves the last committed state
//! intact, has a stable file format with a version in its header, and is maintained. Of the
//! alternatives, `sled` is still beta and unmaintained, and `fjall` (an LSM tree, fine
//! otherwise) acknowledges writes once they reach the OS buffers unless each write asks for a
//! sync, which makes "durable when `apply` returns" easy to get wrong.
//!
//! # Layout
//!
//! One file `<data dir>/<replica name>.redb` per replica, with two tables:
//!
//! * `herd.meta` (`&str` -> bytes): `format_version` (u32, little-endian, always
//!   [`FORMAT_VERSION`]), `replica_id` (u64, little-endian, absent until
//!   [`init`](Storage::init)) and `context` (the replica's causal context bytes).
//! * `herd.entries` (key bytes -> entry bytes).
//!
//! A file that is not a redb database, a redb database without herd's tables or with tables
//! of other types, and a herd store of another format version are each refused by
//! [`RedbStorage::open`] with their own [`StorageError`] variant, their data left as it was
//! (redb may rewrite its own file header when it opens and closes a redb file).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
};

use super::{Entries, FORMAT_VERSION, Snapshot, Storage, StorageError, WriteBatch};

const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("herd.meta");
const ENTRIES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("herd.entries");

const FORMAT_KEY: &str = "format_version";
const REPLICA_ID_KEY: &str = "replica_id";
const CONTEXT_KEY: &str = "context";

/// The file name extension of a replica's database.
const EXTENSION: &str = "redb";

/// When an applied batch becomes durable, i.e. survives a crash of the process, the OS or
/// the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every [`apply`](Storage::apply) commits with an fsync before it returns.
    ///
    /// **A crash loses nothing that `apply` acknowledged** (given a disk that honours fsync);
    /// a batch whose `apply` had not returned is either wholly stored or wholly absent. The
    /// price is one fsync per batch: a few hundred to a few thousand batches per second,
    /// depending on the disk (see the figures in [`crate::storage`]). Batch several
    /// mutations per `apply` (group commit) to go faster.
    #[default]
    Immediate,

    /// [`apply`](Storage::apply) commits without an fsync; a background thread makes all
    /// commits so far durable every `sync_interval` (if there were any), and so do
    /// [`flush`](Storage::flush) and dropping the store.
    ///
    /// **A crash — of the process as well as of the machine — loses every batch applied since
    /// the last completed sync**: at most about `sync_interval` of writes (plus the duration of
    /// one sync), never part of a batch, and never a batch before one that survived (the store
    /// comes back at a consistent earlier state, a prefix of the batches). After such a loss
    /// the replica is behind its peers and catches up through anti-entropy, but writes that
    /// no peer had received yet are gone. (A replica flushes a write-behind store before it
    /// sends anything, see [`Storage::durable_on_apply`], so no peer can hold a write the
    /// store forgot: that would make the restarted replica reuse its dots.)
    WriteBehind {
        /// How often the background thread syncs. Must be non-zero.
        sync_interval: Duration,
    },
}

/// How [`RedbStorage::open`] opens a store.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RedbConfig {
    /// When an applied batch becomes durable. Default: [`Durability::Immediate`].
    pub durability: Durability,
}

impl RedbConfig {
    /// Every batch durable when `apply` returns: the default.
    #[must_use]
    pub fn durable() -> Self {
        Self {
            durability: Durability::Immediate,
        }
    }

    /// Write-behind, syncing every `sync_interval` (see [`Durability::WriteBehind`] for what a
    /// crash may lose). A zero interval is raised to one millisecond.
    #[must_use]
    pub fn write_behind(sync_interval: Duration) -> Self {
        Self {
            durability: Durability::WriteBehind {
                sync_interval: sync_interval.max(Duration::from_millis(1)),
            },
        }
    }
}

/// The durable, embedded [`Storage`]: one redb database file per replica.
///
/// Not `Clone`: the file is locked by one handle at a time. Share it with an `Arc` if needed.
/// Dropping it stops the write-behind thread (if any) and makes every applied batch durable,
/// best effort: call [`flush`](Storage::flush) first to see its error.
///
/// # Examples
///
/// ```
/// use herd::storage::{RedbConfig, RedbStorage, Storage, WriteBatch};
///
/// let dir = tempfile::tempdir()?;
/// let store = RedbStorage::open(dir.path(), "config", RedbConfig::default())?;
/// assert!(store.load()?.is_none());
/// store.init(42)?;
/// store.apply(WriteBatch::new().put(b"k".to_vec(), b"v".to_vec()))?;
/// drop(store);
///
/// let store = RedbStorage::open(dir.path(), "config", RedbConfig::default())?;
/// let snapshot = store.load()?.expect("stored");
/// assert_eq!(snapshot.replica_id, 42);
/// assert_eq!(snapshot.entries.count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedbStorage {
    shared: Arc<Shared>,
    syncer: Option<Syncer>,
}

/// What the handle and the write-behind thread share.
struct Shared {
    db: Database,
    path: PathBuf,
    /// The replica the file is named after.
    name: String,
    write_behind: bool,
    /// Set after a non-durable commit, cleared by the sync that covers it.
    unsynced: AtomicBool,
    /// Serialises syncs so that `flush` returns only after a sync that began after it.
    sync_lock: Mutex<()>,
}

struct Syncer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl RedbStorage {
    /// Opens the store of replica `name` under `data_dir`, creating the directory and an empty
    /// store (one that [`load`](Storage::load)s as `None`) if there is none.
    ///
    /// A replica started on it must have the same name (it refuses to start otherwise); the
    /// usual way to get one is [`ReplicaOptions::redb`](crate::replica::ReplicaOptions::redb),
    /// which takes the name from the replica.
    ///
    /// # Errors
    ///
    /// [`StorageError::InvalidName`] for a name that cannot be a file name;
    /// [`StorageError::AlreadyOpen`] if another handle holds the file;
    /// [`StorageError::Corrupt`], [`StorageError::Foreign`] or
    /// [`StorageError::UnsupportedFormat`] for a file herd cannot read as its store (its data
    /// left as it was); [`StorageError::Io`] if the directory or file cannot be created or read.
    pub fn open(data_dir: &Path, name: &str, config: RedbConfig) -> Result<Self, StorageError> {
        if !valid_name(name) {
            return Err(StorageError::InvalidName {
                name: name.to_owned(),
            });
        }
        std::fs::create_dir_all(data_dir).map_err(StorageError::Io)?;
        let path = data_dir.join(format!("{name}.{EXTENSION}"));
        let db = guarded(&path, || open_database(&path))?;

        let write_behind = matches!(config.durability, Durability::WriteBehind { .. });
        let shared = Arc::new(Shared {
            db,
            path,
            name: name.to_owned(),
            write_behind,
            unsynced: AtomicBool::new(false),
            sync_lock: Mutex::new(()),
        });
        let syncer = match config.durability {
            Durability::Immediate => None,
            Durability::WriteBehind { sync_interval } => {
                Some(Syncer::spawn(Arc::clone(&shared), sync_interval)?)
            }
        };
        Ok(Self { shared, syncer })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// [`Storage::load`] without the guard against engine panics.
    fn load_unguarded(&self) -> Result<Option<Snapshot>, StorageError> {
        let path = &self.shared.path;
        let err = |e: redb::Error| map_err(path, e);
        let txn = self.shared.db.begin_read().map_err(|e| err(e.into()))?;
        let meta = txn.open_table(META).map_err(|e| err(e.into()))?;
        check_format(&meta, path)?;
        let Some(replica_id) = meta.get(REPLICA_ID_KEY).map_err(|e| err(e.into()))? else {
            return Ok(None);
        };
        let replica_id = u64::from_le_bytes(
            replica_id
                .value()
                .try_into()
                .map_err(|_| corrupt(path, "replica id is not 8 bytes"))?,
        );
        let context = meta
            .get(CONTEXT_KEY)
            .map_err(|e| err(e.into()))?
            .map(|c| c.value().to_vec())
            .unwrap_or_default();
        let entries = txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
        let len = entries.len().map_err(|e| err(e.into()))?;
        let range = entries.range::<&[u8]>(..).map_err(|e| err(e.into()))?;
        let path = path.clone();
        let mut range = range;
        let iter = std::iter::from_fn(move || {
            guarded(&path, || Ok(range.next())).transpose().map(|item| {
                item.and_then(|item| {
                    item.map(|(key, entry)| (key.value().to_vec(), entry.value().to_vec()))
                        .map_err(|e| map_err(&path, e.into()))
                })
            })
        });
        Ok(Some(Snapshot {
            replica_id,
            context,
            entries: Entries::new(iter, usize::try_from(len).unwrap_or(usize::MAX)),
        }))
    }
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage")
            .field("path", &self.shared.path)
            .field("write_behind", &self.shared.write_behind)
            .finish_non_exhaustive()
    }
}

impl Storage for RedbStorage {
    fn durable_on_apply(&self) -> bool {
        !self.shared.write_behind
    }

    fn replica_name(&self) -> Option<&str> {
        Some(&self.shared.name)
    }

    fn load(&self) -> Result<Option<Snapshot>, StorageError> {
        guarded(&self.shared.path, || self.load_unguarded())
    }

    fn init(&self, replica_id: u64) -> Result<(), StorageError> {
        let path = &self.shared.path;
        let err = |e: redb::Error| map_err(path, e);
        let mut txn = self.shared.db.begin_write().map_err(|e| err(e.into()))?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| err(e.into()))?;
        txn.delete_table(ENTRIES).map_err(|e| err(e.into()))?;
        txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            meta.insert(REPLICA_ID_KEY, &replica_id.to_le_bytes()[..])
                .map_err(|e| err(e.into()))?;
            meta.insert(CONTEXT_KEY, &[][..])
                .map_err(|e| err(e.into()))?;
        }
        commit(txn, path)?;
        // The durable commit covered any earlier non-durable ones too.
        self.shared.unsynced.store(false, Ordering::Release);
        Ok(())
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        let shared = &*self.shared;
        let path = &shared.path;
        let err = |e: redb::Error| map_err(path, e);
        let mut txn = shared.db.begin_write().map_err(|e| err(e.into()))?;
        let durability = if shared.write_behind {
            redb::Durability::None
        } else {
            redb::Durability::Immediate
        };
        txn.set_durability(durability).map_err(|e| err(e.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            if meta
                .get(REPLICA_ID_KEY)
                .map_err(|e| err(e.into()))?
                .is_none()
            {
                return Err(StorageError::NotInitialized);
            }
            if let Some(context) = batch.context() {
                meta.insert(CONTEXT_KEY, context)
                    .map_err(|e| err(e.into()))?;
            }
            let mut entries = txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
            for (key, entry) in batch.changes() {
                match entry {
                    Some(entry) => entries.insert(key, entry).map(drop),
                    None => entries.remove(key).map(drop),
                }
                .map_err(|e| err(e.into()))?;
            }
        }
        commit(txn, path)?;
        if shared.write_behind {
            shared.unsynced.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.shared.sync()
    }
}

impl Drop for RedbStorage {
    fn drop(&mut self) {
        if let Some(syncer) = self.syncer.take() {
            drop(syncer.stop);
            // A panic in the thread has nothing to tell us; the sync below still runs.
            let _ = syncer.thread.join();
        }
        // Best effort: there is no one to report an error to. `flush` first to see it.
        let _ = self.shared.sync();
    }
}

impl Shared {
    /// Makes every commit so far durable, if some were not.
    fn sync(&self) -> Result<(), StorageError> {
        if !self.write_behind {
            return Ok(());
        }
        let _guard = self
            .sync_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.durable_empty_commit();
        if result.is_err() {
            self.unsynced.store(true, Ordering::Release);
        }
        result
    }

    /// An empty commit with immediate durability: redb then persists every non-durable
    /// commit before it.
    fn durable_empty_commit(&self) -> Result<(), StorageError> {
        let err = |e: redb::Error| map_err(&self.path, e);
        let mut txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| err(e.into()))?;
        commit(txn, &self.path)
    }
}

impl Syncer {
    fn spawn(shared: Arc<Shared>, interval: Duration) -> Result<Self, StorageError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("herd-storage-sync".into())
            .spawn(move || {
                // Ends when the sender is dropped. A failed sync is retried at the next tick;
                // after an I/O error redb refuses writes, so the next `apply` reports it.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let _ = shared.sync();
                }
            })
            .map_err(StorageError::Io)?;
        Ok(Self { stop, thread })
    }
}

/// Opens or creates the database at `path` and checks that it is a herd store.
fn open_database(path: &Path) -> Result<Database, StorageError> {
    // `create` opens an existing database, initialises a missing or empty file, and refuses
    // anything else.
    let db = Database::create(path).map_err(|e| match redb::Error::from(e) {
        // What redb says about a file that is not a redb database or is cut short.
        redb::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            corrupt(path, &io.to_string())
        }
        other => map_err(path, other),
    })?;
    prepare(&db, path)?;

    Ok(db)
}

/// Runs `f`, turning a panic of the storage engine into [`StorageError::Corrupt`].
///
/// redb reports most damage as errors, but some checks on a damaged file are
/// `debug_assert!`s: in a build with debug assertions on (any debug build of the application)
/// they panic instead of returning `Corrupted`. Reading a file must not take the node down, so
/// the reads are guarded. (With `panic = "abort"` nothing can be caught; release builds do not
/// reach these assertions.)
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(corrupt(
            path,
            &format!("the storage engine panicked reading the file: {message}"),
        ))
    })
}

/// Checks that `db` is a herd store of this format, making a new database one.
fn prepare(db: &Database, path: &Path) -> Result<(), StorageError> {
    let err = |e: redb::Error| map_err(path, e);
    {
        let txn = db.begin_read().map_err(|e| err(e.into()))?;
        match txn.open_table(META) {
            Ok(meta) => {
                check_format(&meta, path)?;
                // Both tables are created in one commit, so a missing one is damage.
                return match txn.open_table(ENTRIES) {
                    Ok(_) => Ok(()),
                    Err(TableError::TableDoesNotExist(_)) => {
                        Err(corrupt(path, "herd.entries table missing"))
                    }
                    Err(e) => Err(err(e.into())),
                };
            }
            Err(TableError::TableDoesNotExist(_)) => {
                let tables = txn.list_tables().map_err(|e| err(e.into()))?.count()
                    + txn
                        .list_multimap_tables()
                        .map_err(|e| err(e.into()))?
                        .count();
                if tables > 0 {
                    return Err(StorageError::Foreign {
                        path: path.to_owned(),
                        reason: format!("{tables} tables, none of them herd.meta"),
                    });
                }
            }
            Err(e) => return Err(err(e.into())),
        }
    }
    // A new (or empty) database: make it a herd store, durably.
    let mut txn = db.begin_write().map_err(|e| err(e.into()))?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|e| err(e.into()))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
        meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_le_bytes()[..])
            .map_err(|e| err(e.into()))?;
    }
    txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
    commit(txn, path)
}

/// Refuses a meta table whose format version is missing, malformed or not ours.
fn check_format(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &Path,
) -> Result<(), StorageError> {
    let version = meta
        .get(FORMAT_KEY)
        .map_err(|e| map_err(path, e.into()))?
        .ok_or_else(|| StorageError::Foreign {
            path: path.to_owned(),
            reason: "herd.meta has no format version".into(),
        })?;
    let bytes: [u8; 4] = version
        .value()
        .try_into()
        .map_err(|_| corrupt(path, "format version is not 4 bytes"))?;
    let found = u32::from_le_bytes(bytes);
    if found != FORMAT_VERSION {
        return Err(StorageError::UnsupportedFormat {
            path: path.to_owned(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

fn commit(txn: redb::WriteTransaction, path: &Path) -> Result<(), StorageError> {
    txn.commit().map_err(|e| match e {
        // Refused before anything was written.
        redb::CommitError::TransactionPoisoned => map_err(path, e.into()),
        other => StorageError::CommitUncertain(Box::new(redb::Error::from(other))),
    })
}

fn corrupt(path: &Path, reason: &str) -> StorageError {
    StorageError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Sorts a redb error into the variant that says what it means for the caller.
fn map_err(path: &Path, e: redb::Error) -> StorageError {
    let foreign = |reason: String| StorageError::Foreign {
        path: path.to_owned(),
        reason,
    };
    match e {
        redb::Error::Corrupted(reason) => StorageError::Corrupt {
            path: path.to_owned(),
            reason,
        },
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StorageError::AlreadyOpen {
                path: path.to_owned(),
            }
        }
        redb::Error::UpgradeRequired(version) => {
            foreign(format!("redb file format {version}, not the current one"))
        }
        e @ (redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }) => foreign(e.to_string()),
        redb::Error::Io(io) => StorageError::Io(io),
        other => StorageError::Backend(Box::new(other)),
    }
}

/// Whether `name` is safe as a file name on every platform herd runs on.
fn valid_name(name: &str) -> bool {
    (1..=200).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
