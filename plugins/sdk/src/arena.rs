//! An allocator for plugin instances that live for one call.
//!
//! The host instantiates a plugin afresh for every call and throws the whole
//! linear memory away afterwards, so a general-purpose allocator's work of
//! coalescing and returning memory buys nothing. The host also copies every
//! string and list of the incident in through `cabi_realloc`, some 300
//! allocations per call, and the guest frees them all again when the call's
//! arguments are dropped. This allocator serves each request from a free list
//! of its power-of-two size class, or by bumping a pointer into fresh memory,
//! so both directions cost a few instructions. Freed blocks are reused by later
//! requests of the same class, which keeps a plugin that allocates in a loop
//! within a small multiple of what it holds at once.
//!
//! A plugin opts in with [`use_call_arena!`](crate::use_call_arena), which
//! installs it as the global allocator and as the component's `cabi_realloc`.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

/// Smallest block: room for the free-list link.
const MIN_CLASS: u32 = 3;
/// Size classes 2^3 ..= 2^31.
const CLASSES: usize = 29;
/// Smallest piece of memory taken from the system at a time.
const CHUNK: usize = 32 * 1024;

/// Where the arena's chunks come from: libc's `malloc` in a component, a
/// fixed buffer in native tests.
pub trait Pages {
    /// A fresh chunk of `bytes`, or `None` when there is no more memory.
    fn chunk(&self, bytes: usize) -> Option<usize>;
}

/// A size-class allocator over [`Pages`]. Single-threaded by design: a
/// component instance runs one call on one thread.
pub struct CallArena<P> {
    pages: P,
    state: UnsafeCell<State>,
}

struct State {
    /// Next unused byte of the current region and the end of that region.
    next: usize,
    end: usize,
    /// Heads of the free lists; each free block stores the next one's address.
    free: [usize; CLASSES],
}

// SAFETY: plugin instances are single-threaded (wasm32 without threads); the
// native tests use one arena per thread.
unsafe impl<P: Sync> Sync for CallArena<P> {}

impl<P> CallArena<P> {
    pub const fn new(pages: P) -> Self {
        CallArena {
            pages,
            state: UnsafeCell::new(State {
                next: 0,
                end: 0,
                free: [0; CLASSES],
            }),
        }
    }
}

/// The size class serving `layout`, or `None` beyond 2 GiB.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    let bits = usize::BITS - (size - 1).leading_zeros();
    let class = (bits - MIN_CLASS) as usize;
    (class < CLASSES).then_some(class)
}

fn block_size(class: usize) -> usize {
    1 << (class as u32 + MIN_CLASS)
}

impl<P: Pages> CallArena<P> {
    /// Carves a block of `class` from fresh memory. Blocks are aligned to
    /// their size, which satisfies every layout of the class.
    fn bump(&self, state: &mut State, class: usize) -> *mut u8 {
        let size = block_size(class);
        let fits = |start: usize, end: usize| {
            let start = start.checked_next_multiple_of(size)?;
            (start.checked_add(size)? <= end).then_some(start)
        };
        if let Some(start) = fits(state.next, state.end) {
            state.next = start + size;
            return start as *mut u8;
        }
        // Enough for the block at any alignment of the new chunk.
        let Some(chunk) = (size - 1).checked_add(size).map(|bytes| bytes.max(CHUNK)) else {
            return ptr::null_mut();
        };
        let Some(base) = self.pages.chunk(chunk) else {
            return ptr::null_mut();
        };
        // A chunk right after the current one extends it; otherwise the old
        // tail is abandoned.
        let from = if base == state.end { state.next } else { base };
        state.end = base + chunk;
        match fits(from, state.end) {
            Some(start) => {
                state.next = start + size;
                start as *mut u8
            }
            None => ptr::null_mut(),
        }
    }
}

unsafe impl<P: Pages> GlobalAlloc for CallArena<P> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return ptr::null_mut();
        };
        // SAFETY: single-threaded, and no reference into the state outlives
        // this call.
        let state = unsafe { &mut *self.state.get() };
        let head = state.free[class];
        if head != 0 {
            // SAFETY: `head` is a freed block of this class, whose first word
            // `dealloc` set to the next free block.
            state.free[class] = unsafe { ptr::read(head as *const usize) };
            return head as *mut u8;
        }
        self.bump(state, class)
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return;
        };
        // SAFETY: as in `alloc`; the block is at least a word and aligned to
        // its class, so it can hold the link.
        let state = unsafe { &mut *self.state.get() };
        unsafe { ptr::write(block as *mut usize, state.free[class]) };
        state.free[class] = block as usize;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract: `layout` is the block's layout and the
        // new layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if class_of(layout).is_some() && class_of(layout) == class_of(new_layout) {
            return block;
        }
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            unsafe {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}

/// Chunks from wasi-libc's allocator. It owns the free space the linker left
/// in the initial memory, so the first chunks cost no `memory.grow` (a host
/// call that changes page protections), and it stays the only one that grows
/// the memory, so anything in libc that allocates never overlaps the arena.
#[cfg(target_arch = "wasm32")]
pub struct LibcPages;

#[cfg(target_arch = "wasm32")]
impl Pages for LibcPages {
    fn chunk(&self, bytes: usize) -> Option<usize> {
        unsafe extern "C" {
            fn malloc(size: usize) -> *mut u8;
        }
        // SAFETY: plain libc malloc; the chunk is never freed, the instance
        // is discarded after the call.
        let chunk = unsafe { malloc(bytes) };
        (!chunk.is_null()).then_some(chunk as usize)
    }
}

/// The component model's allocation entry point, served by the global
/// allocator: what [`use_call_arena!`](crate::use_call_arena) exports.
///
/// # Safety
/// Called only by the host's canonical ABI lowering, with a pointer it got
/// from this function and the size and alignment it asked for then.
#[doc(hidden)]
pub unsafe fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    use std::alloc::{alloc, realloc};
    // SAFETY: the canonical ABI passes power-of-two alignments and sizes that
    // fit the memory; `old` came from an earlier call with `old_len`/`align`.
    let block = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if block.is_null() {
        // Out of memory inside a throwaway instance: trap, and the host reports
        // the memory limit.
        std::process::abort();
    }
    block
}

/// Makes [`CallArena`] the plugin's allocator, for Rust code and for the
/// values the host copies in. Use it once, in the crate that builds the
/// component; it does nothing when compiled natively.
#[macro_export]
macro_rules! use_call_arena {
    () => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[global_allocator]
            static ARENA: $crate::arena::CallArena<$crate::arena::LibcPages> =
                $crate::arena::CallArena::new($crate::arena::LibcPages);

            // Overrides wasi-libc's weak `cabi_realloc`, which would hand the
            // host memory from libc's malloc.
            #[unsafe(no_mangle)]
            unsafe extern "C" fn cabi_realloc(
                old: *mut u8,
                old_len: usize,
                align: usize,
                new_len: usize,
            ) -> *mut u8 {
                unsafe { $crate::arena::cabi_realloc(old, old_len, align, new_len) }
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Chunks carved from a fixed buffer, as `malloc` would hand them out.
    struct Buffer {
        next: Cell<usize>,
        end: usize,
        chunks: Cell<usize>,
    }

    impl Buffer {
        fn new(bytes: usize) -> Buffer {
            let memory: &'static mut [u8] = Vec::leak(vec![0u8; bytes]);
            let start = memory.as_mut_ptr() as usize;
            Buffer {
                next: Cell::new(start),
                end: start + bytes,
                chunks: Cell::new(0),
            }
        }
    }

    impl Pages for Buffer {
        fn chunk(&self, bytes: usize) -> Option<usize> {
            // Like malloc: 8-aligned, with a header word between chunks, so
            // chunks are never contiguous with each other.
            let start = (self.next.get() + 8).next_multiple_of(8);
            if start + bytes > self.end {
                return None;
            }
            self.next.set(start + bytes);
            self.chunks.set(self.chunks.get() + 1);
            Some(start)
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_writable_and_disjoint() {
        let arena = CallArena::new(Buffer::new(8 << 20));
        let layouts = [
            (1, 1),
            (3, 1),
            (8, 8),
            (24, 8),
            (100, 4),
            (4096, 16),
            (70_000, 8),
            (5, 64),
        ];
        let blocks: Vec<(*mut u8, Layout)> = (0..40)
            .map(|n| {
                let (size, align) = layouts[n % layouts.len()];
                let layout = layout(size, align);
                let block = unsafe { arena.alloc(layout) };
                assert!(!block.is_null());
                assert_eq!(block as usize % align, 0, "{layout:?} misaligned");
                unsafe { ptr::write_bytes(block, n as u8, size) };
                (block, layout)
            })
            .collect();
        for (n, (block, layout)) in blocks.iter().enumerate() {
            let contents = unsafe { std::slice::from_raw_parts(*block, layout.size()) };
            assert!(
                contents.iter().all(|byte| *byte == n as u8),
                "block {n} overwritten"
            );
        }
    }

    #[test]
    fn freed_blocks_are_reused_by_their_size_class() {
        let arena = CallArena::new(Buffer::new(1 << 20));
        let first = unsafe { arena.alloc(layout(40, 8)) };
        unsafe { arena.dealloc(first, layout(40, 8)) };
        // 33..=64 bytes share a class.
        let second = unsafe { arena.alloc(layout(64, 8)) };
        assert_eq!(first, second);
        let other_class = unsafe { arena.alloc(layout(16, 8)) };
        assert_ne!(other_class, first);
    }

    #[test]
    fn realloc_keeps_contents_and_stays_in_place_within_a_class() {
        let arena = CallArena::new(Buffer::new(1 << 20));
        let block = unsafe { arena.alloc(layout(20, 1)) };
        unsafe { ptr::copy_nonoverlapping(b"twenty bytes of text".as_ptr(), block, 20) };
        let same = unsafe { arena.realloc(block, layout(20, 1), 32) };
        assert_eq!(same, block);
        let moved = unsafe { arena.realloc(same, layout(32, 1), 1000) };
        assert_ne!(moved, block);
        let contents = unsafe { std::slice::from_raw_parts(moved, 20) };
        assert_eq!(contents, b"twenty bytes of text");
        // The block it left is free for the next request of its class.
        assert_eq!(unsafe { arena.alloc(layout(32, 1)) }, block);
    }

    #[test]
    fn churn_reuses_memory_instead_of_taking_more() {
        let arena = CallArena::new(Buffer::new(4 << 20));
        for round in 0..10_000 {
            let size = 1 + (round * 7919) % 3000;
            let block = unsafe { arena.alloc(layout(size, 8)) };
            assert!(!block.is_null(), "ran out of memory in round {round}");
            unsafe { arena.dealloc(block, layout(size, 8)) };
        }
        // One block per class in use at most: a couple of chunks, not 10 000
        // allocations' worth.
        assert!(
            arena.pages.chunks.get() <= 2,
            "took {} chunks",
            arena.pages.chunks.get()
        );
    }

    #[test]
    fn exhausted_memory_is_a_null_block() {
        let arena = CallArena::new(Buffer::new(256 << 10));
        assert!(unsafe { arena.alloc(layout(1 << 20, 8)) }.is_null());
        assert!(!unsafe { arena.alloc(layout(1 << 10, 8)) }.is_null());
        assert!(unsafe { arena.alloc(layout(1 << 40, 8)) }.is_null());
    }
}
