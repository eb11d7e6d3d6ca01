//! Property test: random sequences of every EvBuffer operation against a `Vec<u8>`
//! model, checking contents, length and positions after every step.

use std::io::IoSlice;

use bytes::Bytes;
use proptest::prelude::*;
use tokio_bufferevent::buffer::{EolStyle, EvBuffer, EvBufferError};

/// Bytes from a small alphabet, so lines, needles and CR/LF runs occur often.
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![b'a', b'b', b'\r', b'\n', 0]),
        0..24,
    )
}

fn style() -> impl Strategy<Value = EolStyle> {
    prop::sample::select(vec![
        EolStyle::Any,
        EolStyle::Crlf,
        EolStyle::CrlfStrict,
        EolStyle::Lf,
        EolStyle::Nul,
    ])
}

#[derive(Clone, Debug)]
enum Op {
    Add(Vec<u8>),
    AddBytes(Vec<u8>),
    AddFmt(u32),
    AddIovec(Vec<Vec<u8>>),
    Prepend(Vec<u8>),
    AddBuffer(Vec<u8>, Vec<u8>),
    PrependBuffer(Vec<u8>),
    AddBufferReference(Vec<u8>),
    Remove(usize),
    RemoveBytes(usize),
    RemoveBuffer(usize),
    Drain(usize),
    Copyout(usize),
    CopyoutFrom(usize, usize),
    Peek(usize, usize),
    Pullup(usize),
    Reserve(usize, usize),
    Expand(usize),
    Search(Vec<u8>, usize),
    SearchRange(Vec<u8>, usize, usize),
    SearchEol(EolStyle, usize),
    Readln(EolStyle),
    ReadlnMax(EolStyle, usize),
    Advance(usize, usize),
    Freeze(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0usize..40;
    prop_oneof![
        data().prop_map(Op::Add),
        data().prop_map(Op::AddBytes),
        any::<u32>().prop_map(Op::AddFmt),
        prop::collection::vec(data(), 0..4).prop_map(Op::AddIovec),
        data().prop_map(Op::Prepend),
        (data(), data()).prop_map(|(a, b)| Op::AddBuffer(a, b)),
        data().prop_map(Op::PrependBuffer),
        data().prop_map(Op::AddBufferReference),
        n.clone().prop_map(Op::Remove),
        n.clone().prop_map(Op::RemoveBytes),
        n.clone().prop_map(Op::RemoveBuffer),
        n.clone().prop_map(Op::Drain),
        n.clone().prop_map(Op::Copyout),
        (n.clone(), n.clone()).prop_map(|(a, b)| Op::CopyoutFrom(a, b)),
        (n.clone(), n.clone()).prop_map(|(a, b)| Op::Peek(a, b)),
        n.clone().prop_map(Op::Pullup),
        (0usize..64, 0usize..64).prop_map(|(a, b)| Op::Reserve(a, b)),
        (0usize..100_000).prop_map(Op::Expand),
        (
            prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'\r', b'\n']), 0..4),
            n.clone()
        )
            .prop_map(|(a, b)| Op::Search(a, b)),
        (data(), n.clone(), n.clone()).prop_map(|(a, b, c)| Op::SearchRange(a, b, c)),
        (style(), n.clone()).prop_map(|(a, b)| Op::SearchEol(a, b)),
        style().prop_map(Op::Readln),
        (style(), 0usize..10).prop_map(|(a, b)| Op::ReadlnMax(a, b)),
        (n.clone(), n.clone()).prop_map(|(a, b)| Op::Advance(a, b)),
        any::<bool>().prop_map(Op::Freeze),
    ]
}

/// The simplest possible reading of B-116..B-120: where the terminator starts and how
/// long it is, searching from `start`.
fn model_eol(data: &[u8], start: usize, style: EolStyle) -> Option<(usize, usize)> {
    let is_crlf = |b: &u8| *b == b'\r' || *b == b'\n';
    match style {
        EolStyle::Lf => (start..data.len())
            .find(|&i| data[i] == b'\n')
            .map(|i| (i, 1)),
        EolStyle::Nul => (start..data.len()).find(|&i| data[i] == 0).map(|i| (i, 1)),
        EolStyle::Crlf => (start..data.len()).find(|&i| data[i] == b'\n').map(|i| {
            if i > start && data[i - 1] == b'\r' {
                (i - 1, 2)
            } else {
                (i, 1)
            }
        }),
        EolStyle::CrlfStrict => (start..data.len().saturating_sub(1))
            .find(|&i| data[i] == b'\r' && data[i + 1] == b'\n')
            .map(|i| (i, 2)),
        EolStyle::Any => (start..data.len()).find(|&i| is_crlf(&data[i])).map(|i| {
            let run = data[i..].iter().take_while(|b| is_crlf(b)).count();
            (i, run)
        }),
    }
}

fn model_search(data: &[u8], needle: &[u8], start: usize, limit: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(start);
    }
    (start..data.len()).find(|&i| i + needle.len() <= limit && data[i..].starts_with(needle))
}

fn with_chunks(pieces: &[u8]) -> EvBuffer {
    let mut buf = EvBuffer::new();
    for piece in pieces.chunks(3) {
        buf.add_bytes(Bytes::copy_from_slice(piece)).unwrap();
    }
    buf
}

/// Applies `op` to both and checks that every answer agrees.
fn step(buf: &mut EvBuffer, model: &mut Vec<u8>, frozen: &mut bool, op: Op) {
    let len = model.len();
    // With both ends frozen, every modification must fail and change nothing.
    let frozen_now = *frozen;
    let modifying = |r: Result<(), EvBufferError>, apply: &mut dyn FnMut()| {
        if frozen_now {
            assert!(
                matches!(
                    r,
                    Err(EvBufferError::FrontFrozen | EvBufferError::EndFrozen) | Ok(())
                ),
                "{r:?}"
            );
        } else {
            r.unwrap();
            apply();
        }
    };
    match op {
        Op::Add(d) => {
            let r = buf.add(&d);
            modifying(r, &mut || model.extend_from_slice(&d));
        }
        Op::AddBytes(d) => {
            let r = buf.add_bytes(Bytes::from(d.clone()));
            modifying(r, &mut || model.extend_from_slice(&d));
        }
        Op::AddFmt(v) => {
            let text = format!("{v}:{v:x}\r\n");
            let r = buf.add_fmt(format_args!("{v}:{v:x}\r\n"));
            if let Ok(n) = r {
                assert_eq!(n, text.len());
            }
            modifying(r.map(drop), &mut || {
                model.extend_from_slice(text.as_bytes())
            });
        }
        Op::AddIovec(parts) => {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            let r = buf.add_iovec(&slices);
            modifying(r.map(drop), &mut || model.extend(parts.concat()));
        }
        Op::Prepend(d) => {
            let r = buf.prepend(&d);
            if !frozen_now || d.is_empty() {
                r.unwrap();
                model.splice(0..0, d);
            } else {
                assert!(matches!(r, Err(EvBufferError::FrontFrozen)));
            }
        }
        Op::AddBuffer(first, second) => {
            let mut src = with_chunks(&first);
            src.add(&second).unwrap();
            let r = buf.add_buffer(&mut src);
            let moved = [first, second].concat();
            if frozen_now && !moved.is_empty() {
                assert!(matches!(r, Err(EvBufferError::EndFrozen)));
                assert_eq!(src.len(), moved.len());
            } else {
                r.unwrap();
                assert!(src.is_empty());
                model.extend(moved);
            }
        }
        Op::PrependBuffer(d) => {
            let mut src = with_chunks(&d);
            let r = buf.prepend_buffer(&mut src);
            if frozen_now && !d.is_empty() {
                assert!(matches!(r, Err(EvBufferError::FrontFrozen)));
            } else {
                r.unwrap();
                model.splice(0..0, d);
            }
        }
        Op::AddBufferReference(d) => {
            let mut src = EvBuffer::new();
            src.add(&d).unwrap();
            let r = buf.add_buffer_reference(&mut src);
            assert_eq!(src.to_vec().unwrap(), d);
            src.drain(1).unwrap();
            modifying(r, &mut || model.extend_from_slice(&d));
        }
        Op::Remove(n) => {
            let mut out = vec![0; n];
            match buf.remove(&mut out) {
                Ok(k) => {
                    assert!(
                        !frozen_now || k == 0,
                        "nothing to remove is fine when frozen"
                    );
                    assert_eq!(k, n.min(len));
                    assert_eq!(&out[..k], &model[..k]);
                    model.drain(..k);
                }
                Err(e) => assert!(frozen_now, "{e}"),
            }
        }
        Op::RemoveBytes(n) => match buf.remove_bytes(n) {
            Ok(b) => {
                assert!(
                    !frozen_now || b.is_empty(),
                    "nothing to remove is fine when frozen"
                );
                assert_eq!(&b[..], &model[..n.min(len)]);
                model.drain(..n.min(len));
            }
            Err(e) => assert!(frozen_now, "{e}"),
        },
        Op::RemoveBuffer(n) => {
            let mut dst = EvBuffer::new();
            dst.add(b"dst:").unwrap();
            match buf.remove_buffer(&mut dst, n) {
                Ok(k) => {
                    assert_eq!(k, n.min(len));
                    let mut expect = b"dst:".to_vec();
                    expect.extend(model.drain(..k));
                    assert_eq!(dst.to_vec().unwrap(), expect);
                }
                Err(e) => assert!(frozen_now, "{e}"),
            }
        }
        Op::Drain(n) => {
            let r = buf.drain(n);
            modifying(r, &mut || {
                model.drain(..n.min(len));
            });
        }
        Op::Copyout(n) => {
            let mut out = vec![0; n];
            match buf.copyout(&mut out) {
                Ok(k) => {
                    assert_eq!(k, n.min(len));
                    assert_eq!(&out[..k], &model[..k]);
                }
                Err(e) => assert!(frozen_now, "{e}"),
            }
        }
        Op::CopyoutFrom(at, n) => {
            let at = at.min(len);
            let pos = buf.position(at).unwrap();
            let mut out = vec![0; n];
            match buf.copyout_from(&pos, &mut out) {
                Ok(k) => {
                    assert_eq!(k, n.min(len - at));
                    assert_eq!(&out[..k], &model[at..at + k]);
                }
                Err(e) => assert!(frozen_now, "{e}"),
            }
        }
        Op::Peek(at, n) => {
            let at = at.min(len);
            let pos = buf.position(at).unwrap();
            let extents = buf.peek(Some(&pos), Some(n)).unwrap();
            let joined = extents.concat();
            assert!(joined.len() >= n.min(len - at));
            assert_eq!(&joined[..], &model[at..at + joined.len()]);
            assert!(extents.iter().all(|e| !e.is_empty()));
        }
        Op::Pullup(n) => match buf.pullup(Some(n)) {
            Ok(front) => {
                assert_eq!(front, &model[..n]);
                assert!(n == 0 || buf.contiguous_space() >= n);
            }
            Err(EvBufferError::OutOfRange { .. }) => assert!(n > len),
            Err(e) => panic!("{e}"),
        },
        Op::Reserve(n, k) => match buf.reserve(n) {
            Ok(mut space) => {
                assert_eq!(space.len(), n);
                let k = k.min(n);
                for (i, b) in space[..k].iter_mut().enumerate() {
                    *b = (i % 7) as u8;
                }
                space.commit(k).unwrap();
                model.extend((0..k).map(|i| (i % 7) as u8));
            }
            Err(e) => assert!(frozen_now, "{e}"),
        },
        Op::Expand(n) => buf.expand(n).unwrap(),
        Op::Search(needle, at) | Op::SearchRange(needle, at, usize::MAX) => {
            let at = at.min(len);
            let pos = buf.position(at).unwrap();
            let found = buf.search(&needle, Some(&pos)).unwrap();
            assert_eq!(
                found.map(|p| p.pos()),
                model_search(model, &needle, at, len)
            );
            if let Some(p) = found {
                // The returned position is usable as it is: the needle is there.
                let mut out = vec![0; needle.len()];
                match buf.copyout_from(&p, &mut out) {
                    Ok(copied) => {
                        assert_eq!(copied, needle.len());
                        assert_eq!(out, needle);
                    }
                    Err(e) => assert!(frozen_now, "{e}"),
                }
            }
        }
        Op::SearchRange(needle, at, end) => {
            let (at, end) = (at.min(len), end.min(len));
            let (start, stop) = (buf.position(at).unwrap(), buf.position(end).unwrap());
            let found = buf
                .search_range(&needle, Some(&start), Some(&stop))
                .unwrap();
            assert_eq!(
                found.map(|p| p.pos()),
                model_search(model, &needle, at, end)
            );
        }
        Op::SearchEol(style, at) => {
            let at = at.min(len);
            let pos = buf.position(at).unwrap();
            let found = buf.search_eol(Some(&pos), style).unwrap();
            assert_eq!(
                found.map(|(p, n)| (p.pos(), n)),
                model_eol(model, at, style)
            );
        }
        Op::Readln(style) => match buf.readln(style) {
            Ok(line) => {
                let expect = model_eol(model, 0, style);
                assert_eq!(line.is_some(), expect.is_some());
                if let (Some(line), Some((i, n))) = (line, expect) {
                    assert_eq!(&line[..], &model[..i]);
                    model.drain(..i + n);
                }
            }
            Err(e) => assert!(frozen_now, "{e}"),
        },
        Op::ReadlnMax(style, max) => match buf.readln_max(style, max) {
            Ok(line) => {
                let expect = model_eol(model, 0, style);
                assert_eq!(line.is_some(), expect.is_some(), "{style:?} max {max}");
                if let (Some(line), Some((i, n))) = (line, expect) {
                    assert!(i <= max);
                    assert_eq!(&line[..], &model[..i]);
                    model.drain(..i + n);
                }
            }
            Err(EvBufferError::LineTooLong { max: m, len: l }) => {
                assert_eq!(m, max);
                assert!(l > max);
                match model_eol(model, 0, style) {
                    Some((i, _)) => assert_eq!(i, l),
                    None => assert!(l >= len - 1),
                }
            }
            Err(e) => assert!(frozen_now, "{e}"),
        },
        Op::Advance(at, n) => {
            let at = at.min(len);
            let mut pos = buf.position(at).unwrap();
            match buf.advance_position(&mut pos, n) {
                Ok(()) => {
                    assert!(at + n <= len);
                    assert_eq!(pos.pos(), at + n);
                    let mut b = [0];
                    let k = buf.copyout_from(&pos, &mut b).unwrap_or(0);
                    if !frozen_now && at + n < len {
                        assert_eq!((k, b[0]), (1, model[at + n]));
                    }
                }
                Err(EvBufferError::OutOfRange { .. }) => {
                    assert!(at + n > len);
                    assert_eq!(pos.pos(), at);
                }
                Err(e) => panic!("{e}"),
            }
        }
        Op::Freeze(on) => {
            *frozen = on;
            for at_front in [true, false] {
                if on {
                    buf.freeze(at_front);
                } else {
                    buf.unfreeze(at_front);
                }
            }
        }
    }
    // After every step: same length, same bytes, positions agree with offsets.
    assert_eq!(buf.len(), model.len());
    assert_eq!(buf.to_vec().unwrap(), *model);
    assert_eq!(buf.is_empty(), model.is_empty());
    // Every offset of a short buffer; about 20 spread over a long one, plus the end.
    let stride = (model.len() / 20).max(1);
    for at in (0..=model.len()).step_by(stride).chain([model.len()]) {
        let pos = buf.position(at).unwrap();
        assert_eq!(pos.pos(), at);
        if at < model.len() && !*frozen {
            let mut b = [0];
            assert_eq!(buf.copyout_from(&pos, &mut b).unwrap(), 1);
            assert_eq!(b[0], model[at]);
        }
    }
    assert!(buf.position(model.len() + 1).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn evbuffer_matches_vec_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut buf = EvBuffer::new();
        let mut model = Vec::new();
        let mut frozen = false;
        for op in ops {
            step(&mut buf, &mut model, &mut frozen, op);
        }
    }
}
