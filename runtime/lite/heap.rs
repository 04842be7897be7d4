//! The allocator: power-of-two size classes carved from 64 KiB anonymous
//! mappings, freed blocks kept on a list per class; anything larger is its own
//! mapping. The monitor is single-threaded and allocates little (line buffers,
//! attach clients), so this stays a few dozen lines.

use crate::sys;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::null_mut;

const CHUNK: usize = 64 * 1024;
const MIN: usize = 16;
/// Classes 16 B ..= 64 KiB.
const CLASSES: usize = 13;

struct State {
    free: [*mut u8; CLASSES],
    bump: *mut u8,
    left: usize,
}

pub struct Heap(UnsafeCell<State>);

// SAFETY: berth-monitor-serve has one thread.
unsafe impl Sync for Heap {}

impl Heap {
    pub const fn new() -> Self {
        Heap(UnsafeCell::new(State {
            free: [null_mut(); CLASSES],
            bump: null_mut(),
            left: 0,
        }))
    }
}

fn class(l: Layout) -> Option<(usize, usize)> {
    let size = l.size().max(l.align()).max(MIN).next_power_of_two();
    if size > CHUNK {
        return None;
    }
    Some((
        size.trailing_zeros() as usize - MIN.trailing_zeros() as usize,
        size,
    ))
}

fn pages(n: usize) -> usize {
    (n + 4095) & !4095
}

// SAFETY: blocks are handed out once until freed, sized and aligned to their
// class (classes are powers of two, carved at multiples of their size from
// page-aligned chunks).
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // Chunks and large blocks are only page aligned.
        if l.align() > 4096 {
            return null_mut();
        }
        let Some((c, size)) = class(l) else {
            return sys::map(pages(l.size())).unwrap_or(null_mut());
        };
        // SAFETY: single-threaded, and no reference into the state outlives
        // this call.
        let st = unsafe { &mut *self.0.get() };
        let head = st.free[c];
        if !head.is_null() {
            // SAFETY: a freed block of this class holds the next free block.
            st.free[c] = unsafe { *(head as *mut *mut u8) };
            return head;
        }
        let misalign = (st.bump as usize) & (size - 1);
        let skip = if misalign == 0 { 0 } else { size - misalign };
        if st.bump.is_null() || st.left < skip + size {
            match sys::map(CHUNK) {
                Some(p) => {
                    st.bump = p;
                    st.left = CHUNK;
                }
                None => return null_mut(),
            }
            return self.carve(st, size, 0);
        }
        self.carve(st, size, skip)
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        match class(l) {
            Some((c, _)) => {
                // SAFETY: single-threaded; `p` is a block of class `c` no
                // longer in use, big enough for the link.
                unsafe {
                    let st = &mut *self.0.get();
                    *(p as *mut *mut u8) = st.free[c];
                    st.free[c] = p;
                }
            }
            // SAFETY: a large block is one mapping of this length.
            None => unsafe { sys::unmap(p, pages(l.size())) },
        }
    }
}

impl Heap {
    fn carve(&self, st: &mut State, size: usize, skip: usize) -> *mut u8 {
        // SAFETY: skip + size <= left, inside the current chunk.
        let p = unsafe { st.bump.add(skip) };
        // SAFETY: as above.
        st.bump = unsafe { p.add(size) };
        st.left -= skip + size;
        p
    }
}
