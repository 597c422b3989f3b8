//! What a node process holds on the heap, for the workloads' memory figures.
//!
//! A process's resident set is not what herd holds: glibc keeps freed memory in its arenas
//! (a burst of sync messages leaves its pages resident after it is processed). The workloads
//! report both: the bytes in use on the heap (`mallinfo2`), and the resident set after the
//! `herd` node program's own `trim` handed freed pages back, as it does every few seconds.
//! Elsewhere than glibc the figure is unavailable (`null`) and the trim a no-op.

// The node program's trim, not a copy of it (its `PERIOD` is unused here).
#[allow(dead_code)]
#[path = "../../src/bin/herd/trim.rs"]
mod trim;

/// The `heap` command's answer: hands freed pages back, then `VALUE <bytes in use>`.
pub(crate) fn answer() -> String {
    trim::trim();
    format!("VALUE {}", serde_json::json!(in_use()))
}

/// Bytes allocated and not freed, all arenas (glibc `mallinfo2`: `uordblks` + `hblkhd`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn in_use() -> Option<u64> {
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> Mallinfo2;
    }
    // SAFETY: `mallinfo2` (glibc ≥ 2.33) takes nothing and returns a plain struct by value,
    // read under the arenas' locks.
    let info = unsafe { mallinfo2() };
    Some((info.uordblks + info.hblkhd) as u64)
}

/// Bytes allocated and not freed: unknown without glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn in_use() -> Option<u64> {
    None
}
