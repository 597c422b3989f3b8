//! Giving freed heap memory back to the operating system.
//!
//! glibc's allocator keeps memory a process freed in its arenas, so after a mass delete a
//! node's resident set stays near its peak although herd's own structures shrank (measured:
//! 100,000 keys deleted, heap in use back to the empty baseline, resident set still ~8x it).
//! `malloc_trim` hands those pages back. The node runs it every [`PERIOD`] and on the `trim`
//! command; elsewhere (musl, other systems) this is a no-op.

use std::time::Duration;

/// How often a node trims its heap.
pub(crate) const PERIOD: Duration = Duration::from_secs(10);

/// Returns freed heap pages to the system; true if any were released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn trim() -> bool {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: `malloc_trim` takes no pointers, only walks glibc's own arenas under their
    // locks, and is safe to call from any thread at any time.
    unsafe { malloc_trim(0) != 0 }
}

/// Returns freed heap pages to the system; a no-op without glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn trim() -> bool {
    false
}
