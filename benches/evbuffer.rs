//! Criterion benchmarks of EvBuffer's hot operations, the workloads of
//! `anchors/c/le_evbuffer_bench.c` at a size criterion can sample quickly. For the
//! side-by-side figures against libevent use `examples/evbuffer_bench.rs`.
//!
//! ```text
//! cargo bench --bench evbuffer
//! ```

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tokio_bufferevent::buffer::{EolStyle, EvBuffer};

fn append_and_move(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1024));
    group.bench_function("add64_drain_x1024", |b| {
        let data = [0u8; 64];
        let mut buf = EvBuffer::new();
        b.iter(|| {
            for _ in 0..1024 {
                buf.add(black_box(&data)).unwrap();
            }
            buf.drain(usize::MAX).unwrap();
        });
    });
    group.bench_function("add_fmt_x1024", |b| {
        let mut buf = EvBuffer::new();
        let mut k = 0u32;
        b.iter(|| {
            for _ in 0..1024 {
                buf.add_fmt(format_args!("{}: {}\r\n", black_box("Content-Length"), k))
                    .unwrap();
                k = k.wrapping_add(1);
            }
            buf.drain(usize::MAX).unwrap();
        });
    });
    group.finish();

    c.bench_function("add_buffer_move_16_chunks", |b| {
        static DATA: [u8; 4096] = [0; 4096];
        let (mut a, mut other) = (EvBuffer::new(), EvBuffer::new());
        for _ in 0..16 {
            a.add_bytes(Bytes::from_static(&DATA)).unwrap();
        }
        b.iter(|| {
            other.add_buffer(&mut a).unwrap();
            a.add_buffer(&mut other).unwrap();
        });
    });
}

fn lines(c: &mut Criterion) {
    const N: usize = 10_000;
    let mut src = EvBuffer::new();
    for i in 0..N {
        src.add_fmt(format_args!("line-{i:07}\r\n")).unwrap();
    }
    let mut group = c.benchmark_group("readln_10k_lines");
    group.throughput(Throughput::Elements(N as u64));
    for (name, style) in [
        ("crlf", EolStyle::Crlf),
        ("crlf_strict", EolStyle::CrlfStrict),
        ("lf", EolStyle::Lf),
        ("any", EolStyle::Any),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let mut view = EvBuffer::new();
                    view.add_buffer_reference(&mut src).unwrap();
                    view
                },
                |view| {
                    while let Some(line) = view.readln(style).unwrap() {
                        black_box(line);
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn search(c: &mut Criterion) {
    const HAY: usize = 1 << 20;
    let mut group = c.benchmark_group("search_1m");
    group.throughput(Throughput::Bytes(HAY as u64));
    for (name, needle) in [
        ("rare_first_byte", &b"Xneedle-0123456789"[..]),
        ("common_first_byte", &b"kneedle-0123456789"[..]),
    ] {
        let mut buf = EvBuffer::new();
        let block: Vec<u8> = (0..4096u32).map(|i| b'a' + (i * 7 % 26) as u8).collect();
        for _ in 0..HAY / block.len() {
            buf.add(&block).unwrap();
        }
        buf.add(needle).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| buf.search(black_box(needle), None).unwrap().unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, append_and_move, lines, search);
criterion_main!(benches);
