//! Keeping an idle agent's resident memory small: allocator settings and giving freed memory
//! back to the operating system.
//!
//! Why: with glibc's malloc, memory freed after a catch-up stays resident in the arena it came
//! from (only the top of an arena is ever returned on its own), and every thread that
//! allocates may get an arena of its own. Measured with 1,000 idle files: 29.5 MiB anonymous
//! memory for about 13 MiB of live allocations. Elsewhere (Windows, musl, macOS) these are
//! no-ops: the default allocators there return freed pages themselves or have no such knobs.

/// Limits the number of malloc arenas to `max` for threads that start allocating after this
/// call. The hot path is two threads (reader, matcher) and tokio has one worker, so two
/// arenas keep them from contending while memory freed by one thread can be reused by
/// another. Call it first thing in `main`, before threads are spawned.
pub fn limit_malloc_arenas(max: u32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let max = libc::c_int::try_from(max.max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes glibc's allocator parameters; any value is valid for
        // M_ARENA_MAX and it returns 0 on failure instead of misbehaving.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, max) };
        if ok == 0 {
            tracing::debug!(message = "mallopt(M_ARENA_MAX) refused.", max);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = max;
}

/// Returns memory that is free inside the allocator's arenas to the operating system (glibc
/// `malloc_trim`, which releases whole free pages in every arena, not only at the top).
/// Cheap enough to call once when the agent goes idle; not meant for a hot loop.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes the arena locks itself and only releases pages that hold
        // no allocation; it is safe to call from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident set size of this process, in bytes.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn rss() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        pages * u64::try_from(page).unwrap_or(4096)
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn release_gives_freed_memory_in_the_middle_of_an_arena_back() {
        limit_malloc_arenas(2);
        // 96 MiB in 64 KiB blocks (below the mmap threshold, so inside an arena), with every
        // 16th block kept: the freed space is in the middle, where free() never returns it.
        std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = (0..1536)
                .map(|i| vec![1 + (i % 200) as u8; 64 << 10])
                .collect();
            let kept: Vec<Vec<u8>> = blocks
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| i % 16 == 15)
                .map(|(_, b)| std::mem::take(b))
                .collect();
            drop(blocks);
            let before = rss();
            release_free_memory();
            let after = rss();
            assert!(
                after + (48 << 20) < before,
                "RSS {before} -> {after}: freed pages were not given back"
            );
            assert_eq!(kept.len(), 96);
            assert!(kept.iter().all(|b| b[0] != 0));
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn calls_are_harmless_everywhere() {
        limit_malloc_arenas(0);
        release_free_memory();
        let v = vec![7u8; 1 << 20];
        assert_eq!(v.iter().map(|&b| u64::from(b)).sum::<u64>(), 7 << 20);
    }
}
