//! EvBuffer operations per second, single thread, no I/O: the Rust twin of
//! `anchors/c/le_evbuffer_bench.c`, with the same workloads and the same output keys, so
//! the two run side by side in one session.
//!
//! ```text
//! cargo run --release --example evbuffer_bench -- [REPS [MIN_SECONDS_PER_REP]]   (defaults 5 and 0.3)
//! ```
//!
//! Each benchmark runs REPS times; a rep repeats its batch until MIN_SECONDS have
//! passed. Printed per benchmark: `NAME_ops_s=median`, `NAME_ops_s_min=`,
//! `NAME_ops_s_max=` (`_mb_s` for the searches). Set-up that is not the measured
//! operation (building the 1M-line buffer, the 16 MiB haystack) is outside the timed
//! region, as in the C program.
//!
//! | name | workload |
//! |---|---|
//! | `add64_drain` | `add` of 64-byte pieces (1024 per batch), then `drain` of all; ops = adds |
//! | `add_buffer_move` | `add_buffer` moving a 64 KiB, 16-chunk buffer back and forth; ops = moves |
//! | `readln_crlf` | `readln(Crlf)` over 1M lines `line-NNNNNNN\r\n` read from a zero-copy `add_buffer_reference` view; ops = lines |
//! | `readln_crlf_strict` | the same with `CrlfStrict` |
//! | `search_16m` | `search` for an 18-byte needle at the end of 16 MiB whose bytes never match its first byte; MB/s |
//! | `search_16m_dense` | the same, with the needle's first byte every ~26 bytes; MB/s |
//! | `add_printf` | `add_fmt("{}: {}\r\n", "Content-Length", i)`, drained every 4096; ops = calls |

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_bufferevent::buffer::{EolStyle, EvBuffer};

struct Settings {
    reps: usize,
    min: Duration,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps = match args.first().map(|s| s.parse::<usize>()) {
        None => 5,
        Some(Ok(n)) if (1..=64).contains(&n) => n,
        _ => {
            eprintln!("usage: evbuffer_bench [REPS (1..64) [MIN_SECONDS_PER_REP]]");
            return ExitCode::from(2);
        }
    };
    let min = match args.get(1).map(|s| s.parse::<f64>()) {
        None => 0.3,
        Some(Ok(s)) if (0.0..=3600.0).contains(&s) => s,
        _ => {
            eprintln!("MIN_SECONDS_PER_REP must be a number of seconds from 0 to 3600");
            return ExitCode::from(2);
        }
    };
    let set = Settings {
        reps,
        min: Duration::from_secs_f64(min),
    };
    println!("bench=evbuffer");
    println!("crate=tokio-bufferevent {}", env!("CARGO_PKG_VERSION"));
    println!("reps={reps}\nmin_s_per_rep={min:.2}");
    report(&set, "add64_drain", "ops_s", add64_drain);
    report(&set, "add_buffer_move", "ops_s", add_buffer_move);
    let mut lines = build_lines();
    report(&set, "readln_crlf", "ops_s", |s| {
        readln(s, &mut lines, EolStyle::Crlf)
    });
    report(&set, "readln_crlf_strict", "ops_s", |s| {
        readln(s, &mut lines, EolStyle::CrlfStrict)
    });
    report(&set, "search_16m", "mb_s", |s| {
        search(s, b"Xneedle-0123456789")
    });
    report(&set, "search_16m_dense", "mb_s", |s| {
        search(s, b"kneedle-0123456789")
    });
    report(&set, "add_printf", "ops_s", add_printf);
    ExitCode::SUCCESS
}

/// Runs `rep` `reps` times and prints the median, minimum and maximum.
fn report(set: &Settings, name: &str, unit: &str, mut rep: impl FnMut(&Settings) -> f64) {
    let mut v: Vec<f64> = (0..set.reps).map(|_| rep(set)).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    println!(
        "{name}_{unit}={median:.0}\n{name}_{unit}_min={:.0}\n{name}_{unit}_max={:.0}",
        v[0],
        v[n - 1]
    );
}

/// Repeats `batch` (which returns the operations it did) until `min` has passed;
/// returns operations per second.
fn timed(min: Duration, mut batch: impl FnMut() -> u64) -> f64 {
    let start = Instant::now();
    let mut ops = 0;
    loop {
        ops += batch();
        let elapsed = start.elapsed();
        if elapsed >= min {
            return ops as f64 / elapsed.as_secs_f64();
        }
    }
}

fn add64_drain(set: &Settings) -> f64 {
    let data = [0u8; 64];
    let mut buf = EvBuffer::new();
    timed(set.min, || {
        for _ in 0..1024 {
            buf.add(black_box(&data)).expect("not frozen");
        }
        buf.drain(buf.len()).expect("not frozen");
        1024
    })
}

fn add_buffer_move(set: &Settings) -> f64 {
    static DATA: [u8; 4096] = [0; 4096];
    let (mut a, mut b) = (EvBuffer::new(), EvBuffer::new());
    for _ in 0..16 {
        a.add_bytes(Bytes::from_static(&DATA)).expect("not frozen");
    }
    let rate = timed(set.min, || {
        for _ in 0..1024 {
            b.add_buffer(&mut a).expect("not frozen");
            a.add_buffer(&mut b).expect("not frozen");
        }
        2048
    });
    assert_eq!(black_box(a.len()), 16 * 4096);
    rate
}

const LINES: usize = 1_000_000;

/// The 1M-line source, built line by line as the C program does.
fn build_lines() -> EvBuffer {
    let mut src = EvBuffer::new();
    for i in 0..LINES {
        src.add_fmt(format_args!("line-{i:07}\r\n"))
            .expect("not frozen");
    }
    src
}

fn readln(set: &Settings, src: &mut EvBuffer, style: EolStyle) -> f64 {
    let mut ops = 0u64;
    let mut busy = Duration::ZERO;
    while busy < set.min {
        let mut view = EvBuffer::new();
        view.add_buffer_reference(src).expect("not frozen");
        let start = Instant::now();
        while let Some(line) = view.readln(style).expect("not frozen") {
            black_box(line.len());
            ops += 1;
        }
        busy += start.elapsed();
        assert!(view.is_empty(), "readln left {} bytes", view.len());
    }
    ops as f64 / busy.as_secs_f64()
}

const HAY: usize = 16 << 20;

fn search(set: &Settings, needle: &[u8]) -> f64 {
    let mut block = [0u8; 4096];
    let mut x: u32 = 12345;
    for b in block.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = b'a' + ((x >> 16) % 26) as u8; // lowercase: never 'X'
    }
    let mut buf = EvBuffer::new();
    for _ in 0..HAY / block.len() {
        buf.add(&block).expect("not frozen");
    }
    buf.add(needle).expect("not frozen");
    let total = buf.len();
    let searches_per_s = timed(set.min, || {
        let at = buf.search(black_box(needle), None).expect("in memory");
        assert_eq!(at.map(|p| p.pos()), Some(total - needle.len()));
        1
    });
    searches_per_s * total as f64 / 1e6
}

fn add_printf(set: &Settings) -> f64 {
    let mut buf = EvBuffer::new();
    let mut k: i32 = 0;
    timed(set.min, || {
        for _ in 0..4096 {
            buf.add_fmt(format_args!("{}: {}\r\n", black_box("Content-Length"), k))
                .expect("not frozen");
            k = k.wrapping_add(1);
        }
        buf.drain(buf.len()).expect("not frozen");
        4096
    })
}
