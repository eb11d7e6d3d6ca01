//! Memory behaviour of EvBuffer, measured with a counting global allocator: an empty
//! buffer allocates nothing, and many small appends coalesce (libevent's `iterative`
//! test: waste under 12.5 %).
//!
//! This test binary, not the library, contains the crate's only `unsafe` code: a
//! `GlobalAlloc` that forwards to the system allocator and counts live bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tokio_bufferevent::buffer::EvBuffer;

struct Counting;

thread_local! {
    /// Bytes allocated and not freed by this thread: the harness's other threads (its
    /// output capture, its slow-test monitor) allocate too, and must not count.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

/// Adds `n` to this thread's count (not during thread teardown, when there is none).
fn count(n: isize) {
    let _ = LIVE.try_with(|live| live.set(live.get() + n));
}

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// One test function, on one thread: what it counts is its own.
#[test]
fn memory() {
    empty_buffer_allocates_nothing();
    evbuffer_iterative_small_appends_coalesce();
}

fn empty_buffer_allocates_nothing() {
    let before = live();
    let buf = EvBuffer::new();
    assert_eq!(live(), before);
    assert!(buf.is_empty());
    drop(buf);
    let mut drained = EvBuffer::new();
    drained.add(&[1; 100_000]).unwrap();
    drained.drain(usize::MAX).unwrap();
    drained.shrink_to_fit();
    assert_eq!(live(), before, "a drained, shrunk buffer holds no memory");
}

fn evbuffer_iterative_small_appends_coalesce() {
    let before = live();
    let mut buf = EvBuffer::new();
    let mut expected = 0;
    for i in 0..100_000 {
        expected += buf
            .add_fmt(format_args!("{}{}", "abcdefghijklmnopqrstuvwxyz", i % 1000))
            .unwrap();
    }
    assert_eq!(buf.len(), expected);
    let held = (live() - before) as f64;
    let waste = held / expected as f64 - 1.0;
    assert!(
        waste < 0.125,
        "{held} bytes held for {expected} bytes of data: {:.1} % waste",
        waste * 100.0
    );
    drop(buf);
    assert_eq!(live(), before, "dropping the buffer frees everything");
}
