//! The memory allocator of adapters built for WebAssembly.
//!
//! A mapping makes and frees about a thousand small blocks per message (strings,
//! codings, identifiers). The default allocator of `wasm32-wasip2` (wasi-libc's
//! dlmalloc) took about 20% of a component's map time for the bench's ADT^A01
//! (docs/adapters.md, "Speed: what the sandbox costs"). This one puts a free list
//! per size class in front of it.
//!
//! - Blocks of up to [`MAX_SMALL`] bytes (alignment up to 16) are rounded up to a
//!   multiple of 16.
//! - They come from that size's free list, else are carved from a 64 KiB slab.
//! - When freed, they go back on their list: taking or returning one is a few
//!   instructions.
//! - Larger blocks go to the system allocator as before.
//! - Memory of small blocks is kept for reuse, never returned. A component instance
//!   lives for one batch of calls (the host instantiates an adapter per batch), so
//!   what it holds is its peak.
//!
//! A guest is single-threaded (`wasm32-wasip2` has no threads), so the lists need no
//! lock; the module is compiled only for such targets (and for its own tests). The
//! SDK installs this as the global allocator of every adapter built for wasm32
//! unless the adapter turns off the SDK's `guest-allocator` feature (to install its
//! own). Native builds (tests, the host) never use it.
//!
//! **Known limit: WASI results.** Rust's `cabi_realloc` allocates through the global
//! allocator, so this one, also for the results of WASI calls that wasi-libc makes
//! itself (environment, stdin, directory listings). wasi-libc frees those with
//! dlmalloc's `free`, and a block from these slabs must never reach dlmalloc. This is
//! safe today only because the gateway gives adapters an empty WASI context
//! (`host/runtime/src/loaded.rs`): no environment, no stdin, no directories, so
//! those calls return nothing. Before adapters get any WASI input, `cabi_realloc`
//! must allocate from dlmalloc, and `dealloc` must tell the two kinds of block apart
//! by address.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr::null_mut;

/// The largest block served from the size classes.
pub const MAX_SMALL: usize = 1024;
const GRAIN: usize = 16;
const CLASSES: usize = MAX_SMALL / GRAIN;
const SLAB: usize = 64 * 1024;

struct State {
    /// Head of each class's free list; a free block holds the next one's address.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current slab.
    next: *mut u8,
    end: *mut u8,
}

/// The allocator; see the module documentation.
pub struct SizeClasses {
    state: UnsafeCell<State>,
}

// Safety: only installed on single-threaded targets (see `lib.rs`).
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> Self {
        SizeClasses { state: UnsafeCell::new(State { free: [null_mut(); CLASSES], next: null_mut(), end: null_mut() }) }
    }
}

/// The class of a block of this layout, if it is a small one.
#[inline]
fn class(l: Layout) -> Option<usize> {
    (l.size() <= MAX_SMALL && l.align() <= GRAIN && l.size() > 0).then(|| (l.size() - 1) / GRAIN)
}

unsafe impl GlobalAlloc for SizeClasses {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let Some(c) = class(l) else {
            return unsafe { System.alloc(l) };
        };
        // Safety: single-threaded, and no reference into the state outlives this call.
        let s = unsafe { &mut *self.state.get() };
        let head = s.free[c];
        if !head.is_null() {
            s.free[c] = unsafe { *(head as *mut *mut u8) };
            return head;
        }
        let size = (c + 1) * GRAIN;
        if (s.end as usize) - (s.next as usize) < size {
            // (the slab's unused tail is abandoned: at most MAX_SMALL bytes)
            let slab = unsafe { System.alloc(Layout::from_size_align_unchecked(SLAB, GRAIN)) };
            if slab.is_null() {
                return slab;
            }
            s.next = slab;
            s.end = unsafe { slab.add(SLAB) };
        }
        let p = s.next;
        s.next = unsafe { p.add(size) };
        p
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some(c) = class(l) else {
            return unsafe { System.dealloc(p, l) };
        };
        let s = unsafe { &mut *self.state.get() };
        unsafe { *(p as *mut *mut u8) = s.free[c] };
        s.free[c] = p;
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        match (class(l), class(new)) {
            // Same class: the block already has room.
            (Some(a), Some(b)) if a == b => p,
            (None, None) => unsafe { System.realloc(p, l, new_size) },
            _ => {
                let q = unsafe { self.alloc(new) };
                if !q.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                        self.dealloc(p, l);
                    }
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every class and large ones, freed and reused, keep their contents
    /// and never overlap.
    #[test]
    fn blocks_are_distinct_reused_and_keep_their_contents() {
        let a = SizeClasses::new();
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        for round in 0..3u8 {
            for size in [1, 8, 15, 16, 17, 100, 512, 1000, 1024, 1025, 5000] {
                let l = Layout::from_size_align(size, 8).unwrap();
                let p = unsafe { a.alloc(l) };
                assert!(!p.is_null());
                assert_eq!(p as usize % 8, 0);
                unsafe { std::ptr::write_bytes(p, round ^ size as u8, size) };
                live.push((p, l, round ^ size as u8));
            }
            // Free every other block, then grow the rest across classes.
            let mut kept = Vec::new();
            for (i, (p, l, v)) in live.drain(..).enumerate() {
                if i % 2 == 0 {
                    unsafe { a.dealloc(p, l) };
                } else {
                    let grown = l.size() * 2 + 3;
                    let q = unsafe { a.realloc(p, l, grown) };
                    let q_l = Layout::from_size_align(grown, 8).unwrap();
                    for k in 0..l.size() {
                        assert_eq!(unsafe { *q.add(k) }, v, "contents kept through realloc");
                    }
                    unsafe { std::ptr::write_bytes(q, v, grown) };
                    kept.push((q, q_l, v));
                }
            }
            live = kept;
        }
        let mut spans: Vec<(usize, usize)> = live.iter().map(|(p, l, _)| (*p as usize, *p as usize + l.size())).collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "blocks overlap: {w:?}");
        }
        for (p, l, v) in &live {
            for k in 0..l.size() {
                assert_eq!(unsafe { *p.add(k) }, *v);
            }
        }
    }

    #[test]
    fn a_freed_block_is_handed_out_again_for_its_class() {
        let a = SizeClasses::new();
        let l = Layout::from_size_align(40, 8).unwrap();
        let p = unsafe { a.alloc(l) };
        unsafe { a.dealloc(p, l) };
        // 33..=48 bytes share the class.
        let q = unsafe { a.alloc(Layout::from_size_align(48, 16).unwrap()) };
        assert_eq!(p, q);
    }
}
