//! One test per evbuffer behaviour B-104..B-131 of the libevent semantics reference,
//! named after it, plus the bad-input cases: each gives a clear error, leaves the buffer
//! unchanged, and nothing panics.

use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio_bufferevent::buffer::{
    CallbackInfo, EolStyle, EvBuffer, EvBufferError, LineReader, Position,
};

type Result = std::result::Result<(), EvBufferError>;

/// A buffer made of the given pieces, each its own chunk.
fn chunked(pieces: &[&'static [u8]]) -> EvBuffer {
    let mut buf = EvBuffer::new();
    for p in pieces {
        buf.add_bytes(Bytes::from_static(p)).unwrap();
    }
    buf
}

/// Counts how often its `Drop` runs: libevent's reference cleanup callback.
struct Owner {
    data: Vec<u8>,
    drops: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn owned(data: &[u8], drops: &Arc<AtomicUsize>) -> Bytes {
    Bytes::from_owner(Owner {
        data: data.to_vec(),
        drops: Arc::clone(drops),
    })
}

fn lines(buf: &mut EvBuffer, style: EolStyle) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| buf.readln(style).unwrap().map(|l| l.to_vec())).collect()
}

#[test]
fn b104_add_and_prepend_with_freezing() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"bc")?;
    buf.prepend(b"a")?;
    assert_eq!(buf.to_vec()?, b"abc");
    buf.freeze(false);
    assert!(matches!(buf.add(b""), Err(EvBufferError::EndFrozen)));
    assert!(matches!(buf.add(b"x"), Err(EvBufferError::EndFrozen)));
    buf.unfreeze(false);
    buf.freeze(true);
    buf.prepend(b"")?; // a no-op even when frozen
    assert!(matches!(buf.prepend(b"z"), Err(EvBufferError::FrontFrozen)));
    assert_eq!(buf.to_vec()?, b"abc");
    Ok(())
}

#[test]
fn b104_prepend_never_writes_into_referenced_memory() -> Result {
    static DATA: &[u8] = b"referenced";
    let mut buf = EvBuffer::new();
    buf.add_bytes(Bytes::from_static(DATA))?;
    buf.drain(3)?;
    buf.prepend(b"XYZ")?;
    assert_eq!(buf.to_vec()?, b"XYZerenced");
    assert_eq!(DATA, b"referenced");
    Ok(())
}

#[test]
fn b105_remove_copyout_and_copyout_from() -> Result {
    let mut buf = chunked(&[b"abc", b"def", b"ghi"]);
    let mut out = [0; 4];
    assert_eq!(buf.copyout(&mut out)?, 4);
    assert_eq!(&out, b"abcd");
    assert_eq!(buf.len(), 9);
    let pos = buf.position(7)?;
    assert_eq!(buf.copyout_from(&pos, &mut out)?, 2);
    assert_eq!(&out[..2], b"hi");
    let end = buf.position(9)?;
    assert_eq!(buf.copyout_from(&end, &mut out)?, 0);
    assert_eq!(buf.remove(&mut out)?, 4);
    assert_eq!(&out, b"abcd");
    let mut big = [0; 16];
    assert_eq!(buf.remove(&mut big)?, 5);
    assert_eq!(&big[..5], b"efghi");
    assert_eq!(buf.remove(&mut big)?, 0);
    buf.freeze(true);
    // Nothing to remove or copy is a success even with a frozen front.
    assert_eq!(buf.remove(&mut big)?, 0);
    assert!(buf.remove_bytes(5)?.is_empty());
    let end = buf.position(0)?;
    assert_eq!(buf.copyout_from(&end, &mut big)?, 0);
    buf.unfreeze(true);
    buf.add(b"x")?;
    buf.freeze(true);
    assert!(matches!(
        buf.remove(&mut big),
        Err(EvBufferError::FrontFrozen)
    ));
    assert!(matches!(
        buf.copyout(&mut big),
        Err(EvBufferError::FrontFrozen)
    ));
    assert_eq!(buf.len(), 1);
    Ok(())
}

#[test]
fn b106_drain() -> Result {
    let mut buf = chunked(&[b"abc", b"def"]);
    buf.drain(4)?;
    assert_eq!(buf.to_vec()?, b"ef");
    buf.drain(usize::MAX)?;
    assert!(buf.is_empty());
    buf.freeze(true);
    buf.drain(10)?; // empty: fine even when frozen
    buf.unfreeze(true);
    buf.add(b"x")?;
    buf.freeze(true);
    assert!(matches!(buf.drain(1), Err(EvBufferError::FrontFrozen)));
    assert_eq!(buf.len(), 1);
    Ok(())
}

#[test]
fn b107_add_buffer_and_prepend_buffer() -> Result {
    let mut a = chunked(&[b"12", b"34"]);
    let mut b = EvBuffer::new();
    b.add(b"56")?;
    a.add_buffer(&mut b)?;
    assert_eq!((a.to_vec()?, b.len()), (b"123456".to_vec(), 0));
    let mut empty = EvBuffer::new();
    empty.freeze(true);
    a.freeze(false);
    a.add_buffer(&mut empty)?; // an empty source is a no-op without freeze checks
    b.add(b"x")?;
    assert!(matches!(
        a.add_buffer(&mut b),
        Err(EvBufferError::EndFrozen)
    ));
    a.unfreeze(false);
    b.freeze(true);
    assert!(matches!(
        a.add_buffer(&mut b),
        Err(EvBufferError::FrontFrozen)
    ));
    b.unfreeze(true);
    a.prepend_buffer(&mut b)?;
    assert_eq!(a.to_vec()?, b"x123456");
    b.add(b"y")?;
    a.freeze(true);
    assert!(matches!(
        a.prepend_buffer(&mut b),
        Err(EvBufferError::FrontFrozen)
    ));
    assert_eq!((a.len(), b.len()), (7, 1));
    Ok(())
}

#[test]
fn b107_add_buffer_runs_source_callbacks_then_destination_callbacks() -> Result {
    let order = Arc::new(Mutex::new(Vec::new()));
    let (mut src, mut dst) = (EvBuffer::new(), EvBuffer::new());
    src.add(b"data")?;
    let o = Arc::clone(&order);
    src.add_cb(move |_, i| o.lock().unwrap().push(("src", *i)));
    let o = Arc::clone(&order);
    dst.add_cb(move |_, i| o.lock().unwrap().push(("dst", *i)));
    dst.add_buffer(&mut src)?;
    let info = |orig_size, n_added, n_deleted| CallbackInfo {
        orig_size,
        n_added,
        n_deleted,
    };
    assert_eq!(
        *order.lock().unwrap(),
        [("src", info(4, 0, 4)), ("dst", info(0, 4, 0))]
    );
    Ok(())
}

#[test]
fn b107_add_buffer_moves_chunks_without_copying() -> Result {
    static DATA: &[u8] = b"not copied";
    let (mut a, mut b) = (EvBuffer::new(), EvBuffer::new());
    a.add_bytes(Bytes::from_static(DATA))?;
    b.add(b"prefix ")?;
    b.add_buffer(&mut a)?;
    b.drain(7)?;
    let moved = b.remove_bytes(10)?;
    assert_eq!(moved.as_ptr(), DATA.as_ptr());
    Ok(())
}

#[test]
fn b108_remove_buffer_exact_boundary() -> Result {
    let mut src = chunked(&[b"aaaa", b"bbbb", b"cccc"]);
    let mut dst = EvBuffer::new();
    assert_eq!(src.remove_buffer(&mut dst, 0)?, 0);
    assert_eq!(src.remove_buffer(&mut dst, 6)?, 6);
    assert_eq!(dst.to_vec()?, b"aaaabb");
    assert_eq!(src.to_vec()?, b"bbcccc");
    assert_eq!(src.remove_buffer(&mut dst, 100)?, 6);
    assert!(src.is_empty());
    src.add(b"q")?;
    dst.freeze(false);
    assert!(matches!(
        src.remove_buffer(&mut dst, 1),
        Err(EvBufferError::EndFrozen)
    ));
    dst.unfreeze(false);
    src.freeze(true);
    assert!(matches!(
        src.remove_buffer(&mut dst, 1),
        Err(EvBufferError::FrontFrozen)
    ));
    assert_eq!((src.len(), dst.len()), (1, 12));
    // Frozen is an error even with nothing to move; only `n == 0` is not asked.
    let mut empty = EvBuffer::new();
    empty.freeze(true);
    assert!(matches!(
        empty.remove_buffer(&mut dst, 5),
        Err(EvBufferError::FrontFrozen)
    ));
    assert_eq!(empty.remove_buffer(&mut dst, 0)?, 0);
    Ok(())
}

#[test]
fn b108_remove_buffer_runs_destination_callbacks_first() -> Result {
    let order = Arc::new(Mutex::new(Vec::new()));
    let (mut src, mut dst) = (EvBuffer::new(), EvBuffer::new());
    src.add(b"0123456789")?;
    let o = Arc::clone(&order);
    src.add_cb(move |_, _| o.lock().unwrap().push("src"));
    let o = Arc::clone(&order);
    dst.add_cb(move |_, _| o.lock().unwrap().push("dst"));
    src.remove_buffer(&mut dst, 3)?;
    assert_eq!(*order.lock().unwrap(), ["dst", "src"]);
    Ok(())
}

#[test]
fn b109_add_fmt_and_add_iovec_return_byte_counts() -> Result {
    let mut buf = EvBuffer::new();
    assert_eq!(buf.add_fmt(format_args!("Hello world"))?, 11);
    assert_eq!(
        buf.add_iovec(&[IoSlice::new(b"a"), IoSlice::new(b""), IoSlice::new(b"bc")])?,
        3
    );
    assert_eq!(buf.to_vec()?, b"Hello worldabc");
    buf.freeze(false);
    assert!(matches!(
        buf.add_fmt(format_args!("{}", 1)),
        Err(EvBufferError::EndFrozen)
    ));
    assert!(matches!(
        buf.add_iovec(&[IoSlice::new(b"x")]),
        Err(EvBufferError::EndFrozen)
    ));
    Ok(())
}

#[test]
fn b110_length_and_contiguous_space() -> Result {
    let mut buf = EvBuffer::new();
    assert_eq!((buf.len(), buf.contiguous_space()), (0, 0));
    buf.add_bytes(Bytes::from_static(b"first"))?;
    buf.add_bytes(Bytes::from_static(b"second"))?;
    assert_eq!((buf.len(), buf.contiguous_space()), (11, 5));
    buf.drain(2)?;
    assert_eq!(buf.contiguous_space(), 3);
    Ok(())
}

#[test]
fn b111_positions_set_add_and_invalidation() -> Result {
    let mut buf = chunked(&[b"abc", b"de", b"fgh"]);
    let mut p = buf.position(2)?;
    buf.advance_position(&mut p, 3)?; // across chunks
    assert_eq!(p.pos(), 5);
    let mut b = [0];
    buf.copyout_from(&p, &mut b)?;
    assert_eq!(&b, b"f");
    buf.advance_position(&mut p, 3)?; // exactly the end
    assert_eq!(p.pos(), 8);
    assert!(matches!(
        buf.advance_position(&mut p, 1),
        Err(EvBufferError::OutOfRange { .. })
    ));
    assert_eq!(p.pos(), 8);
    assert!(matches!(
        buf.position(9),
        Err(EvBufferError::OutOfRange {
            requested: 9,
            available: 8
        })
    ));
    buf.add(b"i")?;
    assert!(matches!(
        buf.advance_position(&mut p, 1),
        Err(EvBufferError::StalePosition)
    ));
    Ok(())
}

#[test]
fn b112_search_and_search_range() -> Result {
    let buf = chunked(&[b"hello wo", b"rld, hello", b" world"]);
    assert_eq!(buf.search(b"world", None)?.map(|p| p.pos()), Some(6));
    let mut from = buf.search(b"world", None)?.unwrap();
    assert_eq!(buf.search(b"world", Some(&from))?.map(|p| p.pos()), Some(6));
    buf.advance_position(&mut from, 1)?;
    assert_eq!(
        buf.search(b"world", Some(&from))?.map(|p| p.pos()),
        Some(19)
    );
    assert_eq!(buf.search(b"", Some(&from))?.map(|p| p.pos()), Some(7));
    assert_eq!(buf.search(b"absent", None)?, None);
    let end = buf.position(10)?;
    assert_eq!(buf.search_range(b"world", None, Some(&end))?, None);
    let end = buf.position(11)?;
    assert_eq!(
        buf.search_range(b"world", None, Some(&end))?
            .map(|p| p.pos()),
        Some(6)
    );
    let at_end = buf.position(buf.len())?;
    assert_eq!(buf.search(b"d", Some(&at_end))?, None);
    assert_eq!(EvBuffer::new().search(b"x", None)?, None);
    Ok(())
}

#[test]
fn b113_peek_extents() -> Result {
    let buf = chunked(&[b"abc", b"def", b"ghi"]);
    assert_eq!(buf.peek(None, Some(4))?, [&b"abc"[..], b"def"]);
    assert_eq!(buf.peek(None, None)?.len(), 3);
    let p = buf.position(4)?;
    assert_eq!(buf.peek(Some(&p), Some(1))?, [&b"ef"[..]]);
    let end = buf.position(9)?;
    assert!(buf.peek(Some(&end), None)?.is_empty());
    assert!(EvBuffer::new().peek(None, None)?.is_empty());
    Ok(())
}

#[test]
fn b114_pullup() -> Result {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut buf = EvBuffer::new();
    buf.add_bytes(owned(b"ab", &drops))?;
    buf.add_bytes(owned(b"cd", &drops))?;
    buf.freeze(true);
    buf.freeze(false); // freezing does not affect pullup
    assert_eq!(buf.pullup(None)?, b"abcd");
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "copied references released"
    );
    assert_eq!(buf.pullup(Some(0))?, b"");
    assert!(matches!(
        buf.pullup(Some(5)),
        Err(EvBufferError::OutOfRange { .. })
    ));
    assert_eq!(EvBuffer::new().pullup(None)?, b"");
    Ok(())
}

#[test]
fn b115_readln_returns_line_without_terminator_and_keeps_partial() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"with\0nul\npartial")?;
    assert_eq!(
        buf.readln(EolStyle::Lf)?.as_deref(),
        Some(&b"with\0nul"[..])
    );
    assert_eq!(buf.readln(EolStyle::Lf)?, None);
    assert_eq!(buf.to_vec()?, b"partial");
    buf.add(b"\n")?;
    buf.freeze(true);
    assert!(matches!(
        buf.readln(EolStyle::Lf),
        Err(EvBufferError::FrontFrozen)
    ));
    assert_eq!(buf.len(), 8);
    Ok(())
}

#[test]
fn b116_eol_any() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"a\r\n\r\nb\rc\n")?;
    assert_eq!(lines(&mut buf, EolStyle::Any), [b"a", b"b", b"c"]);
    buf.add(b"d\r")?;
    assert_eq!(buf.readln(EolStyle::Any)?.as_deref(), Some(&b"d"[..]));
    buf.add(b"\n")?;
    assert_eq!(buf.readln(EolStyle::Any)?.as_deref(), Some(&b""[..]));
    Ok(())
}

#[test]
fn b117_eol_crlf() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"a\r\r\nb\rc\n\nd\r\n")?;
    assert_eq!(
        lines(&mut buf, EolStyle::Crlf),
        [&b"a\r"[..], b"b\rc", b"", b"d"]
    );
    Ok(())
}

#[test]
fn b118_eol_crlf_strict() -> Result {
    let mut buf = chunked(&[b"a\nb\r", b"\nc\rd\r"]);
    assert_eq!(
        buf.readln(EolStyle::CrlfStrict)?.as_deref(),
        Some(&b"a\nb"[..])
    );
    assert_eq!(buf.readln(EolStyle::CrlfStrict)?, None);
    buf.add(b"\n")?;
    assert_eq!(
        buf.readln(EolStyle::CrlfStrict)?.as_deref(),
        Some(&b"c\rd"[..])
    );
    Ok(())
}

#[test]
fn b119_eol_lf_and_nul() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"a\r\n")?;
    assert_eq!(buf.readln(EolStyle::Lf)?.as_deref(), Some(&b"a\r"[..]));
    buf.add(b"NUL\n\0\0x")?;
    assert_eq!(lines(&mut buf, EolStyle::Nul), [&b"NUL\n"[..], b""]);
    assert_eq!(buf.to_vec()?, b"x");
    Ok(())
}

#[test]
fn b120_search_eol() -> Result {
    let buf = chunked(&[b"line1\nli", b"ne2\r", b"\nline3"]);
    let found = |start: Option<&Position>, style| {
        buf.search_eol(start, style)
            .unwrap()
            .map(|(p, n)| (p.pos(), n))
    };
    assert_eq!(found(None, EolStyle::Lf), Some((5, 1)));
    assert_eq!(found(None, EolStyle::CrlfStrict), Some((11, 2)));
    let after = buf.position(6)?;
    assert_eq!(found(Some(&after), EolStyle::Crlf), Some((11, 2)));
    let on_lf = buf.position(12)?;
    assert_eq!(found(Some(&on_lf), EolStyle::Crlf), Some((12, 1)));
    assert_eq!(found(Some(&after), EolStyle::Any), Some((11, 2)));
    let end = buf.position(buf.len())?;
    assert_eq!(found(Some(&end), EolStyle::Any), None);
    Ok(())
}

#[test]
fn b121_reserve_does_not_change_length_and_reserves_again() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"a")?;
    {
        let space = buf.reserve(100)?;
        assert_eq!(space.len(), 100);
    } // dropped without commit
    assert_eq!(buf.len(), 1);
    buf.freeze(false);
    assert!(matches!(buf.reserve(1), Err(EvBufferError::EndFrozen)));
    Ok(())
}

#[test]
fn b122_commit_partial_and_too_much() -> Result {
    let mut buf = EvBuffer::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    buf.add_cb(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let mut space = buf.reserve(10)?;
    space[..3].copy_from_slice(b"abc");
    space.commit(3)?;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(buf.to_vec()?, b"abc");
    let space = buf.reserve(4)?;
    assert!(matches!(
        space.commit(5),
        Err(EvBufferError::CommitTooLarge {
            requested: 5,
            reserved: 4
        })
    ));
    assert_eq!(buf.len(), 3);
    buf.reserve(4)?.commit(0)?;
    assert_eq!((buf.len(), calls.load(Ordering::SeqCst)), (3, 1));
    Ok(())
}

/// A reservation leaked with `mem::forget` (safe code) leaves the buffer as it was:
/// what is added next is what is read, and its length stays true.
#[test]
fn a_leaked_reservation_leaves_the_buffer_whole() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"ab")?;
    let mut space = buf.reserve(4)?;
    space.copy_from_slice(b"XXXX");
    std::mem::forget(space);
    buf.add(b"cd")?;
    assert_eq!(buf.len(), 4);
    assert_eq!(buf.to_vec()?, b"abcd");
    // The room a dropped reservation had is used again, not allocated anew.
    let before = buf.reserve(8)?.as_ptr();
    let after = buf.reserve(8)?.as_ptr();
    assert_eq!(before, after);
    buf.reserve(8)?.commit(0)?;
    assert_eq!(buf.to_vec()?, b"abcd");
    Ok(())
}

#[test]
fn b123_expand_and_absurd_sizes() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"x")?;
    buf.expand(100_000)?;
    assert_eq!(buf.len(), 1);
    for huge in [usize::MAX, usize::MAX / 2, 1 << 50] {
        assert!(matches!(
            buf.expand(huge),
            Err(EvBufferError::TooLarge { .. })
        ));
        assert!(matches!(
            buf.reserve(huge),
            Err(EvBufferError::TooLarge { .. })
        ));
    }
    buf.add(b"y")?;
    assert_eq!(buf.to_vec()?, b"xy");
    Ok(())
}

#[test]
fn b124_reference_cleanup_runs_exactly_once() -> Result {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut buf = EvBuffer::new();
    buf.add_bytes(owned(b"0123456789", &drops))?;
    buf.drain(4)?;
    let mut moved = EvBuffer::new();
    buf.remove_buffer(&mut moved, 3)?;
    buf.drain(3)?;
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "bytes still held by `moved`"
    );
    moved.drain(3)?;
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    let mut dropped = EvBuffer::new();
    dropped.add_bytes(owned(b"abc", &drops))?;
    drop(dropped);
    assert_eq!(drops.load(Ordering::SeqCst), 2);

    let mut frozen = EvBuffer::new();
    frozen.freeze(false);
    assert!(frozen.add_bytes(owned(b"abc", &drops)).is_err());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        3,
        "divergence: a refused Bytes is dropped, so its owner is released"
    );
    Ok(())
}

#[test]
fn b125_buffer_reference_is_a_shared_independent_view() -> Result {
    let mut src = EvBuffer::new();
    src.add(b"multicast")?;
    let mut view = EvBuffer::new();
    view.add_buffer_reference(&mut src)?;
    let mut view2 = EvBuffer::new();
    view2.add_buffer_reference(&mut view)?; // nesting works here
    src.drain(5)?;
    src.add(b"!")?;
    assert_eq!(src.to_vec()?, b"cast!");
    drop(src);
    assert_eq!(view.to_vec()?, b"multicast");
    view.drain(usize::MAX)?;
    assert_eq!(view2.to_vec()?, b"multicast");
    let mut empty = EvBuffer::new();
    view.add_buffer_reference(&mut empty)?;
    view.freeze(false);
    view.add_buffer_reference(&mut empty)?; // an empty source succeeds even when frozen
    assert!(matches!(
        view.add_buffer_reference(&mut view2),
        Err(EvBufferError::EndFrozen)
    ));
    Ok(())
}

#[test]
fn b126_add_file_loads_lazily_and_validates() -> Result {
    let path = std::env::temp_dir().join(format!("evbuffer-b126-{}", std::process::id()));
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let mut buf = EvBuffer::new();
    buf.add_file(std::fs::File::open(&path).unwrap(), 1000, Some(150_000))?;
    assert_eq!(buf.len(), 150_000);
    let mut out = Vec::new();
    while !buf.is_empty() {
        buf.write_to(&mut out).unwrap();
    }
    assert_eq!(out, content[1000..151_000]);
    buf.add_file(std::fs::File::open(&path).unwrap(), 199_990, None)?;
    assert_eq!(buf.to_vec()?, content[199_990..]);
    let before = buf.len();
    assert!(matches!(
        buf.add_file(std::fs::File::open(&path).unwrap(), 199_990, Some(11)),
        Err(EvBufferError::OutOfRange { .. })
    ));
    assert!(matches!(
        buf.add_file(std::fs::File::open(&path).unwrap(), 300_000, None),
        Err(EvBufferError::OutOfRange { .. })
    ));
    let write_only = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    assert!(matches!(
        buf.add_file(write_only, 0, None),
        Err(EvBufferError::Io(_))
    ));
    assert_eq!(buf.len(), before);
    std::fs::remove_file(&path).unwrap();
    Ok(())
}

#[test]
fn b126_file_truncated_after_add_reports_an_error_and_keeps_the_buffer() -> Result {
    let path = std::env::temp_dir().join(format!("evbuffer-b126t-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; 100_000]).unwrap();
    let mut buf = EvBuffer::new();
    buf.add_file(std::fs::File::open(&path).unwrap(), 0, None)?;
    std::fs::write(&path, b"short").unwrap();
    assert!(matches!(buf.remove_bytes(10), Err(EvBufferError::Io(_))));
    assert_eq!(buf.len(), 100_000);
    std::fs::remove_file(&path).unwrap();
    Ok(())
}

#[test]
fn b127_freeze_matrix() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"line\n")?;
    let mut other = EvBuffer::new();
    other.add(b"o")?;
    buf.freeze(true);
    let mut tmp = [0; 2];
    assert!(matches!(buf.drain(1), Err(EvBufferError::FrontFrozen)));
    assert!(matches!(
        buf.remove(&mut tmp),
        Err(EvBufferError::FrontFrozen)
    ));
    assert!(matches!(
        buf.remove_bytes(1),
        Err(EvBufferError::FrontFrozen)
    ));
    assert!(matches!(
        buf.copyout(&mut tmp),
        Err(EvBufferError::FrontFrozen)
    ));
    let p = buf.position(1)?;
    assert!(matches!(
        buf.copyout_from(&p, &mut tmp),
        Err(EvBufferError::FrontFrozen)
    ));
    assert!(matches!(
        buf.readln(EolStyle::Lf),
        Err(EvBufferError::FrontFrozen)
    ));
    assert!(matches!(buf.prepend(b"x"), Err(EvBufferError::FrontFrozen)));
    assert!(matches!(
        buf.prepend_buffer(&mut other),
        Err(EvBufferError::FrontFrozen)
    ));
    assert!(matches!(
        other.add_buffer(&mut buf),
        Err(EvBufferError::FrontFrozen)
    ));
    assert!(matches!(
        buf.remove_buffer(&mut other, 1),
        Err(EvBufferError::FrontFrozen)
    ));
    assert!(buf.write_to(&mut Vec::new()).is_err());
    // Unaffected by a frozen front: appends, length, peek, pullup, search, positions.
    buf.add(b"more")?;
    assert_eq!(buf.len(), 9);
    assert_eq!(buf.peek(None, None)?.concat(), b"line\nmore");
    assert_eq!(buf.pullup(Some(2))?, b"li");
    assert!(buf.search(b"more", None)?.is_some());
    buf.position(9)?;
    buf.unfreeze(true);

    buf.freeze(false);
    assert!(matches!(buf.add(b""), Err(EvBufferError::EndFrozen)));
    assert!(matches!(
        buf.add_bytes(Bytes::from_static(b"x")),
        Err(EvBufferError::EndFrozen)
    ));
    assert!(matches!(
        buf.add_fmt(format_args!("x")),
        Err(EvBufferError::EndFrozen)
    ));
    assert!(matches!(buf.reserve(1), Err(EvBufferError::EndFrozen)));
    assert!(matches!(
        buf.add_buffer(&mut other),
        Err(EvBufferError::EndFrozen)
    ));
    assert!(matches!(
        other.remove_buffer(&mut buf, 1),
        Err(EvBufferError::EndFrozen)
    ));
    assert!(buf.read_from(&mut &b"abc"[..], 3).is_err());
    // Unaffected by a frozen end: removal from the front.
    buf.drain(1)?;
    assert_eq!(buf.readln(EolStyle::Lf)?.as_deref(), Some(&b"ine"[..]));
    assert_eq!(buf.to_vec()?, b"more");
    assert_eq!(other.to_vec()?, b"o");
    Ok(())
}

#[test]
fn b128_callbacks_newest_first_with_shared_info() -> Result {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut buf = EvBuffer::new();
    buf.add(b"123")?;
    for name in ["first", "second"] {
        let l = Arc::clone(&log);
        buf.add_cb(move |_, info| l.lock().unwrap().push((name, *info)));
    }
    buf.add(b"")?; // no change, no callback
    buf.drain(0)?;
    buf.add(b"4567")?;
    let info = CallbackInfo {
        orig_size: 3,
        n_added: 4,
        n_deleted: 0,
    };
    assert_eq!(*log.lock().unwrap(), [("second", info), ("first", info)]);
    Ok(())
}

#[test]
fn b129_counters_reset_even_for_disabled_callbacks() -> Result {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut buf = EvBuffer::new();
    let l = Arc::clone(&log);
    let id = buf.add_cb(move |_, i| l.lock().unwrap().push(*i));
    buf.add(b"a")?;
    buf.set_cb_enabled(id, false)?;
    buf.add(b"bc")?;
    buf.set_cb_enabled(id, true)?;
    buf.add(b"d")?;
    assert_eq!(
        *log.lock().unwrap(),
        [
            CallbackInfo {
                orig_size: 0,
                n_added: 1,
                n_deleted: 0
            },
            CallbackInfo {
                orig_size: 3,
                n_added: 1,
                n_deleted: 0
            },
        ]
    );
    Ok(())
}

#[test]
fn b130_callbacks_may_modify_the_buffer_and_remove_themselves() -> Result {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut buf = EvBuffer::new();
    let l = Arc::clone(&log);
    buf.add_cb(move |b, info| {
        l.lock().unwrap().push(*info);
        b.drain(usize::MAX).unwrap(); // a self-draining buffer
    });
    buf.add(b"abc")?;
    assert!(buf.is_empty());
    assert_eq!(
        *log.lock().unwrap(),
        [
            CallbackInfo {
                orig_size: 0,
                n_added: 3,
                n_deleted: 0
            },
            // The drain is reported in a second round, not by re-entering.
            CallbackInfo {
                orig_size: 3,
                n_added: 0,
                n_deleted: 3
            },
        ]
    );

    let calls = Arc::new(AtomicUsize::new(0));
    let mut once = EvBuffer::new();
    let own_id = Arc::new(Mutex::new(None));
    let (c, idc) = (Arc::clone(&calls), Arc::clone(&own_id));
    let id = once.add_cb(move |b, _| {
        c.fetch_add(1, Ordering::SeqCst);
        let id = idc.lock().unwrap().expect("id set");
        b.remove_cb(id).unwrap();
    });
    *own_id.lock().unwrap() = Some(id);
    once.add(b"x")?;
    once.add(b"y")?;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(
        once.remove_cb(id),
        Err(EvBufferError::CallbackNotFound)
    ));

    let mut cleared = EvBuffer::new();
    let c = Arc::clone(&calls);
    cleared.add_cb(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    cleared.clear_callbacks();
    cleared.add(b"z")?;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn b131_deferred_callbacks_accumulate() -> Result {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut buf = EvBuffer::new();
    buf.defer_callbacks(true);
    let l = Arc::clone(&log);
    buf.add_cb(move |_, i| l.lock().unwrap().push(*i));
    buf.add(b"hello")?;
    buf.drain(2)?;
    buf.add(b"!")?;
    assert!(log.lock().unwrap().is_empty());
    buf.run_deferred_callbacks();
    buf.run_deferred_callbacks(); // nothing new: no second call
    assert_eq!(
        *log.lock().unwrap(),
        [CallbackInfo {
            orig_size: 0,
            n_added: 6,
            n_deleted: 2
        }]
    );
    Ok(())
}

/// D-E16: `add_iovec` is one change, reported once with the total.
#[test]
fn add_iovec_runs_the_callbacks_once() -> Result {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut buf = EvBuffer::new();
    let l = Arc::clone(&log);
    buf.add_cb(move |_, i| l.lock().unwrap().push(*i));
    let n = buf.add_iovec(&[IoSlice::new(b"ab"), IoSlice::new(b""), IoSlice::new(b"cde")])?;
    assert_eq!(n, 5);
    assert_eq!(
        *log.lock().unwrap(),
        [CallbackInfo {
            orig_size: 0,
            n_added: 5,
            n_deleted: 0
        }]
    );
    Ok(())
}

/// B-131: changes made before any callback is registered are not reported to the
/// first one (libevent resets its counters while the callback list is empty).
#[test]
fn b131_changes_before_the_first_callback_are_not_reported() -> Result {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut buf = EvBuffer::new();
    buf.defer_callbacks(true);
    buf.add(b"abc")?;
    let l = Arc::clone(&log);
    buf.add_cb(move |_, i| l.lock().unwrap().push(*i));
    buf.add(b"d")?;
    buf.run_deferred_callbacks();
    assert_eq!(
        *log.lock().unwrap(),
        [CallbackInfo {
            orig_size: 3,
            n_added: 1,
            n_deleted: 0
        }]
    );
    Ok(())
}

#[test]
fn empty_buffer_allocates_nothing_and_drained_memory_is_released() -> Result {
    let buf = EvBuffer::new();
    assert_eq!(buf.contiguous_space(), 0);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut buf = EvBuffer::new();
    buf.add_bytes(owned(&[1; 1000], &drops))?;
    buf.drain(usize::MAX)?;
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn bad_input_lines_over_the_limit() -> Result {
    let mut buf = EvBuffer::new();
    buf.add(b"12345\r")?;
    // The final CR may still become CR LF: 5 bytes so far, within a limit of 5.
    assert_eq!(buf.readln_max(EolStyle::Crlf, 5)?, None);
    buf.add(b"6")?;
    assert!(matches!(
        buf.readln_max(EolStyle::Crlf, 5),
        Err(EvBufferError::LineTooLong { max: 5, len: 7 })
    ));
    assert_eq!(buf.len(), 7);

    let mut reader = LineReader::new(EolStyle::Crlf, 5);
    assert!(matches!(
        reader.read_line(&mut buf),
        Err(EvBufferError::LineTooLong { .. })
    ));
    assert!(reader.is_discarding());
    assert_eq!(reader.read_line(&mut buf)?, None);
    assert!(buf.is_empty());
    // The rest of the flood arrives in pieces and costs nothing.
    for _ in 0..100 {
        buf.add(&[b'x'; 1000])?;
        assert_eq!(reader.read_line(&mut buf)?, None);
        assert!(buf.len() <= 1);
    }
    buf.add(b"end of flood\r\nok\r\n")?;
    assert_eq!(reader.read_line(&mut buf)?.as_deref(), Some(&b"ok"[..]));
    assert!(!reader.is_discarding());
    Ok(())
}

#[test]
fn bad_input_out_of_range_and_stale_positions_change_nothing() -> Result {
    let mut buf = chunked(&[b"abc", b"def"]);
    let stale = buf.position(2)?;
    buf.add(b"g")?;
    let mut out = [0; 3];
    assert!(matches!(
        buf.copyout_from(&stale, &mut out),
        Err(EvBufferError::StalePosition)
    ));
    assert!(matches!(
        buf.search(b"d", Some(&stale)),
        Err(EvBufferError::StalePosition)
    ));
    assert!(matches!(
        buf.search_eol(Some(&stale), EolStyle::Lf),
        Err(EvBufferError::StalePosition)
    ));
    assert!(matches!(
        buf.peek(Some(&stale), None),
        Err(EvBufferError::StalePosition)
    ));
    assert!(matches!(
        buf.position(usize::MAX),
        Err(EvBufferError::OutOfRange { .. })
    ));
    assert!(matches!(
        buf.pullup(Some(usize::MAX)),
        Err(EvBufferError::OutOfRange { .. })
    ));
    let other = EvBuffer::new();
    let foreign = other.position(0)?;
    // A position from another buffer is at worst stale or in range: never a panic.
    let _ = buf.copyout_from(&foreign, &mut out);
    assert_eq!(buf.to_vec()?, b"abcdefg");
    Ok(())
}

#[test]
fn errors_convert_to_io_errors_with_meaningful_kinds() {
    use std::io::ErrorKind;
    let kind = |e: EvBufferError| std::io::Error::from(e).kind();
    assert_eq!(
        kind(EvBufferError::LineTooLong { max: 1, len: 2 }),
        ErrorKind::InvalidData
    );
    assert_eq!(
        kind(EvBufferError::TooLarge { requested: 1 }),
        ErrorKind::OutOfMemory
    );
    assert_eq!(kind(EvBufferError::StalePosition), ErrorKind::InvalidInput);
    let msg = EvBufferError::LineTooLong { max: 4, len: 9 }.to_string();
    assert_eq!(msg, "line of at least 9 bytes exceeds the limit of 4");
}
