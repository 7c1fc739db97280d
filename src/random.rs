//! Random bytes for ids (a task's, an event's, a message's): read from the operating system a
//! block at a time instead of one system call per id. The block belongs to the thread and the
//! process that read it: a forked child drops what it inherited and reads its own, so parent and
//! child never hand out the same bytes. A fork is known by a count the child's `pthread_atfork`
//! handler raises (asking the kernel for the pid at each id would be a system call again).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Forks this process's lineage went through: a forked child raises it before anything else runs
/// in it, so a block read before the fork no longer matches.
static FORKS: AtomicU64 = AtomicU64::new(0);
static WATCH_FORKS: Once = Once::new();

extern "C" fn forked_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// The count of forks, the handler registered on first use.
fn forks() -> u64 {
    WATCH_FORKS.call_once(|| {
        // SAFETY: the child handler only adds to an atomic (async-signal-safe, as a handler run
        // after fork must be). glibc ties the handler to this library and removes it if the
        // library is unloaded. Registration fails only without memory: then forks are not seen,
        // so ids fall back to one system call each (below).
        let r = unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
        if r != 0 {
            FORKS.store(u64::MAX, Ordering::Relaxed);
        }
    });
    FORKS.load(Ordering::Relaxed)
}

/// How many bytes are read at once: 256 ids of 16 bytes.
const BLOCK: usize = 4096;

struct Block {
    /// [`forks`] when it was read.
    forks: u64,
    bytes: [u8; BLOCK],
    /// Bytes of `bytes` already handed out.
    used: usize,
}

thread_local! {
    static BLOCK_OF_THREAD: RefCell<Option<Block>> = const { RefCell::new(None) };
}

/// 16 random bytes from the operating system's generator, each handed out once.
pub fn bytes16() -> [u8; 16] {
    BLOCK_OF_THREAD.with(|cell| {
        let mut cell = cell.borrow_mut();
        let forks = forks();
        if forks == u64::MAX {
            let mut one = [0u8; 16];
            fill(&mut one);
            return one;
        }
        let stale = cell.as_ref().is_none_or(|b| b.forks != forks || b.used + 16 > BLOCK);
        if stale {
            let mut bytes = [0u8; BLOCK];
            fill(&mut bytes);
            *cell = Some(Block { forks, bytes, used: 0 });
        }
        let b = cell.as_mut().expect("set above");
        let mut out = [0u8; 16];
        out.copy_from_slice(&b.bytes[b.used..b.used + 16]);
        // Handed out once: what is left in the block is never read again.
        b.bytes[b.used..b.used + 16].fill(0);
        b.used += 16;
        out
    })
}

fn fill(bytes: &mut [u8]) {
    // The operating system's generator does not fail once it is seeded (Linux's getrandom blocks
    // until then); failing there is not recoverable.
    getrandom::fill(bytes).expect("the operating system's random generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn never_the_same_bytes_twice_across_blocks() {
        let seen: HashSet<[u8; 16]> = (0..3 * BLOCK / 16).map(|_| bytes16()).collect();
        assert_eq!(seen.len(), 3 * BLOCK / 16);
    }

    #[test]
    fn a_forked_child_never_hands_out_its_parents_bytes() {
        let _ = bytes16();
        let mut pipe = [0 as libc::c_int; 2];
        // SAFETY: a pipe of two descriptors owned by this test, closed below.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: the child only computes, writes to the pipe and leaves with _exit (no unwinding,
        // no destructors, no locks of the parent's other threads taken).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let b = bytes16();
            unsafe {
                libc::write(pipe[1], b.as_ptr().cast(), 16);
                libc::_exit(0);
            }
        }
        let parent = bytes16();
        let mut child = [0u8; 16];
        // SAFETY: reads 16 bytes into a buffer of 16; the child was waited for; both ends closed.
        unsafe {
            assert_eq!(libc::read(pipe[0], child.as_mut_ptr().cast(), 16), 16);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
        assert_ne!(parent, child, "the child read a block of its own");
    }
}
