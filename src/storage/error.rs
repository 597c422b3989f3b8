//! The one error type of the module.

use std::path::PathBuf;

use thiserror::Error;

/// A boxed error from the storage engine, kept as the [`source`](std::error::Error::source) of
/// a [`StorageError`] without making the engine's types part of herd's API.
pub type BoxedError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a storage operation failed.
///
/// Each variant says whether anything was written. The short version: every variant but
/// [`CommitUncertain`](StorageError::CommitUncertain) guarantees that the failed call wrote
/// nothing, so the stored state is exactly what it was before the call.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The replica name cannot name a file: it must be 1 to 200 characters of ASCII letters,
    /// digits, `_`, `-` and `.`, and must not start with `.`.
    ///
    /// Nothing was opened, created or written.
    #[error("invalid replica name {name:?}: use 1..=200 of [A-Za-z0-9_.-], not starting with '.'")]
    InvalidName {
        /// The name given.
        name: String,
    },

    /// The database file is already open, by another handle in this process or by another
    /// process (redb takes an exclusive file lock).
    ///
    /// Nothing was read or written.
    #[error("{}: already open by another handle or process", path.display())]
    AlreadyOpen {
        /// The database file.
        path: PathBuf,
    },

    /// The file is not a readable database: random bytes, a truncated file, a failed
    /// checksum, or a herd record with an impossible value.
    ///
    /// herd wrote nothing: a file that is not a redb database at all is left byte for byte,
    /// for inspection (redb may have attempted its own repair of a damaged redb file before
    /// giving up). herd never replaces a corrupt file by an empty store on its own: moving it away is the operator's decision
    /// (after which the replica starts fresh, with a new replica id).
    #[error("{}: corrupt store: {reason}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong, in words.
        reason: String,
    },

    /// The file is a readable database, but not one herd wrote: another redb file format,
    /// tables herd does not know, or tables of other types.
    ///
    /// Nothing of herd's was written; the file's data is left as it was (redb may rewrite its
    /// own header on open).
    #[error("{}: not a herd store: {reason}", path.display())]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// What was found, in words.
        reason: String,
    },

    /// The file is a herd store of a format version this build does not read (written by a
    /// newer, or much older, herd).
    ///
    /// Nothing of herd's was written; the file's data is left as it was.
    #[error(
        "{}: store format version {found} (this build reads only version {supported})",
        path.display()
    )]
    UnsupportedFormat {
        /// The database file.
        path: PathBuf,
        /// The format version recorded in the file.
        found: u32,
        /// The version this build reads, [`FORMAT_VERSION`](super::FORMAT_VERSION).
        supported: u32,
    },

    /// A batch was applied to a store that holds no replica yet: call
    /// [`Storage::init`](super::Storage::init) first.
    ///
    /// Nothing was written.
    #[error("the store holds no replica yet: call init first")]
    NotInitialized,

    /// An I/O error before anything was committed (creating the data directory, opening or
    /// reading the file).
    ///
    /// Nothing was written.
    #[error("storage I/O error: {0}")]
    Io(#[source] std::io::Error),

    /// The commit itself failed (typically the write or the fsync of the file).
    ///
    /// The batch is either wholly stored or wholly absent, but which one is unknown until the
    /// store is opened again and loaded. After this error the handle refuses further writes;
    /// drop it, open the store again and reload.
    #[error("commit failed, its outcome is unknown until the store is reopened: {0}")]
    CommitUncertain(#[source] BoxedError),

    /// Any other error of the storage engine (a transaction that could not start, a poisoned
    /// lock, a previous I/O error that disabled the handle).
    ///
    /// Nothing was written.
    #[error("storage engine error: {0}")]
    Backend(#[source] BoxedError),
}
