//! What a node process holds on the heap, for the workloads' memory figures.
//!
//! A process's resident set is not what herd holds: glibc keeps freed memory in its arenas
//! (a burst of sync messages leaves its pages resident after it is processed). The workloads
//! report both: the bytes in use on the heap (`mallinfo2`), and the resident set after
//! [`trim`] handed freed pages back, as the `herd` node program does every few seconds.
//! Elsewhere than glibc both are unavailable (`None`, no-op).

/// Bytes allocated and not freed, all arenas (glibc `mallinfo2`: `uordblks` + `hblkhd`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn in_use() -> Option<u64> {
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
pub(crate) fn in_use() -> Option<u64> {
    None
}

/// Hands freed heap pages back to the system (glibc `malloc_trim`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn trim() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: `malloc_trim` takes no pointers and walks glibc's arenas under their locks.
    unsafe {
        malloc_trim(0);
    }
}

/// Hands freed heap pages back to the system: a no-op without glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn trim() {}
