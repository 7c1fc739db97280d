//! Memory shared by a process and the children it forks: an anonymous shared mapping, made before
//! the fork and typed ([`Shm`]). It holds only types made of atomics ([`Atomics`], declared with
//! [`atomics!`]), so every process and thread reads and writes it field by field without a lock,
//! and it holds no pointer, so it means the same in every process. Every `unsafe` of the worker's
//! shared maps (`worker/shared.rs`, `metrics/stats.rs`) is here. On the ground floor: it depends
//! on nothing of the crate, and the worker and the metrics both use it.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

/// A type made only of atomics: all-zero bytes are a valid value of it (an atomic holding 0), it
/// owns no pointer or resource (nothing to drop, the same meaning in every process), and shared
/// access (`&self`) is race-free field by field.
///
/// # Safety
/// Implement it only for such a type. Structs get it through [`atomics!`], which checks that each
/// field's type has it.
pub unsafe trait Atomics {}

// SAFETY: each is a plain integer behind an atomic: zero is a valid value, no pointer, no drop.
unsafe impl Atomics for AtomicBool {}
unsafe impl Atomics for AtomicU8 {}
unsafe impl Atomics for AtomicU32 {}
unsafe impl Atomics for AtomicI32 {}
unsafe impl Atomics for AtomicU64 {}
unsafe impl Atomics for AtomicI64 {}
unsafe impl Atomics for AtomicUsize {}
// SAFETY: nothing at all.
unsafe impl Atomics for () {}
// SAFETY: an array of such values is such a value, element by element.
unsafe impl<T: Atomics, const N: usize> Atomics for [T; N] {}

/// Compiles only for a type that is [`Atomics`]; used by [`atomics!`] on each field.
pub const fn must_be_atomics<T: Atomics>() {}

/// Declares a `#[repr(C)]` struct of atomics and makes it [`Atomics`]; a field of any other type
/// does not compile.
macro_rules! atomics {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        // SAFETY: every field is `Atomics` (checked by the constant below), so the struct is too:
        // zero bytes make each field valid, and it owns nothing.
        unsafe impl $crate::shm::Atomics for $name {}

        const _: () = {
            $($crate::shm::must_be_atomics::<$ty>();)*
        };
    };
}
pub(crate) use atomics;

/// An anonymous shared mapping holding one `H` followed by `n` values of `E` (none by default),
/// zeroed when made; unmapped when dropped. A child forked after it was made shares it.
pub struct Shm<H: Atomics, E: Atomics = ()> {
    base: NonNull<u8>,
    items: usize,
    _holds: PhantomData<(H, E)>,
}

// SAFETY: H and E are `Atomics`: every access through `&Shm` is an atomic operation on memory the
// mapping owns, so using it from several threads at once is race-free (Sync), and nothing ties it
// to the thread that made it (Send). The mapping lives until `drop`, which takes it by `&mut`,
// after every borrow of it ended.
unsafe impl<H: Atomics, E: Atomics> Send for Shm<H, E> {}
unsafe impl<H: Atomics, E: Atomics> Sync for Shm<H, E> {}

impl<H: Atomics, E: Atomics> Shm<H, E> {
    /// Where the items start: after the head, aligned for `E`.
    fn items_at() -> usize {
        std::mem::size_of::<H>().next_multiple_of(std::mem::align_of::<E>())
    }

    /// The mapping's length in bytes (at least one: `mmap` refuses an empty one).
    fn len(items: usize) -> usize {
        (Self::items_at() + items * std::mem::size_of::<E>()).max(1)
    }

    /// Maps a head and `items` items, all zero.
    pub fn with_items(items: usize) -> std::io::Result<Self> {
        // A mapping starts on a page; a type aligned beyond that would not fit.
        assert!(std::mem::align_of::<H>() <= 4096 && std::mem::align_of::<E>() <= 4096);
        // SAFETY: a fresh anonymous mapping, aliasing nothing; the kernel zeroes it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::len(items),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast()).ok_or_else(|| std::io::Error::other("mmap gave a null mapping"))?;
        Ok(Shm { base, items, _holds: PhantomData })
    }

    pub fn head(&self) -> &H {
        // SAFETY: the mapping starts with an `H` (page-aligned, so aligned for it), zero bytes are
        // a valid `H` (`Atomics`), and it lives as long as `self`.
        unsafe { &*self.base.as_ptr().cast::<H>() }
    }

    pub fn items(&self) -> &[E] {
        // SAFETY: `items` values of `E` follow the head at `items_at` (aligned for `E`), inside the
        // mapping's length; zero bytes are valid values (`Atomics`); they live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(Self::items_at()).cast::<E>(), self.items) }
    }
}

impl<H: Atomics> Shm<H> {
    /// Maps one `H`, zeroed.
    pub fn new() -> std::io::Result<Self> {
        Self::with_items(0)
    }
}

impl<H: Atomics, E: Atomics> Drop for Shm<H, E> {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `with_items`, with its length; no borrow of it is
        // left (`&mut self`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), Self::len(self.items)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    atomics! {
        struct Head {
            a: AtomicU8,
            b: AtomicU64,
        }
    }

    atomics! {
        struct Item {
            n: AtomicU32,
            bytes: [AtomicU8; 3],
        }
    }

    #[test]
    fn zeroed_and_laid_out() {
        assert_eq!(Shm::<Head, Item>::items_at(), 16);
        assert_eq!(Shm::<(), Item>::items_at(), 0);
        assert_eq!(Shm::<Head>::len(0), 16);
        assert_eq!(Shm::<()>::len(0), 1);
        let m = Shm::<Head, Item>::with_items(3).unwrap();
        assert_eq!(m.head().b.load(Ordering::Relaxed), 0);
        assert_eq!(m.items().len(), 3);
        assert!(m.items().iter().all(|i| i.n.load(Ordering::Relaxed) == 0));
        m.items()[2].bytes[2].store(7, Ordering::Relaxed);
        m.head().b.store(9, Ordering::Relaxed);
        assert_eq!((m.items()[2].bytes[2].load(Ordering::Relaxed), m.head().b.load(Ordering::Relaxed)), (7, 9));
    }

    #[test]
    fn shared_with_a_forked_child() {
        let m = Shm::<Head>::new().unwrap();
        // SAFETY: the child only stores into the mapping and leaves with _exit.
        match unsafe { libc::fork() } {
            0 => {
                m.head().b.store(42, Ordering::Release);
                // SAFETY: leaves the child without running the test harness's exit path.
                unsafe { libc::_exit(0) }
            }
            -1 => panic!("fork failed"),
            pid => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                assert_eq!(m.head().b.load(Ordering::Acquire), 42);
            }
        }
    }
}
