//! Makes glibc give back the memory of large messages.
//!
//! glibc serves an allocation at or above its mmap threshold (128 KiB at start) with its own
//! `mmap`, returned to the system on `free`. But each such `free` raises the threshold to the
//! freed size (up to 32 MiB), so after the first 5 MiB message every later one is carved out
//! of the heap arenas instead, and those pages stay with the process: a gateway that received
//! a few 5 MiB messages stayed at 3 to 4 times its idle size. Setting the threshold once,
//! explicitly, turns the dynamic adjustment off: buffers of 1 MiB and more are mapped and
//! unmapped on their own, and the small allocations of ordinary traffic stay in the arenas.
//!
//! The workspace forbids unsafe code; this crate is the one exception, one call with its
//! safety argument, so the rest of hl7gw keeps `forbid(unsafe_code)`.

/// Allocations of this many bytes and more get their own mapping, given back when freed.
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`]. Returns whether the allocator took it
/// (always `false` where the C library is not glibc: nothing to do there).
pub fn give_back_large_allocations() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // 1 MiB fits a C int on every platform glibc runs on.
        let threshold = MMAP_THRESHOLD as libc::c_int;
        // SAFETY: mallopt only changes an allocator parameter under glibc's own lock; it
        // touches no memory of ours and is documented as callable at any time. A refused
        // value is reported by the return value (0), not by undefined behaviour.
        #[allow(unsafe_code)]
        let accepted = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) };
        accepted == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_threshold() {
        assert!(give_back_large_allocations());
    }
}
