//! Property test: random operations on a pair (writes on either side, enabling and
//! disabling directions, read high watermarks, reads, flushes) against a simple
//! model of two byte streams. After every step, nothing is lost, duplicated or
//! reordered, and a reader never holds more than its read high watermark unless a
//! flush forced it (B-74, B-78..B-80).

use proptest::prelude::*;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, FlushMode, Pair, Watermarks};

mod common;

use common::settle;

#[derive(Clone, Debug)]
enum Op {
    /// Side 0 or 1 writes this many bytes.
    Write(usize, usize),
    Enable(usize, Direction),
    Disable(usize, Direction),
    /// A read high watermark (0: none) on one side.
    High(usize, usize),
    /// One side reads up to this many bytes.
    Read(usize, usize),
    /// A `Flush` of one side's WRITE: everything moves, whatever the watermarks.
    Flush(usize),
}

fn side() -> impl Strategy<Value = usize> {
    0..2usize
}

fn direction() -> impl Strategy<Value = Direction> {
    prop::sample::select(vec![Direction::READ, Direction::WRITE, Direction::BOTH])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (side(), 1..300usize).prop_map(|(s, n)| Op::Write(s, n)),
        2 => (side(), direction()).prop_map(|(s, d)| Op::Enable(s, d)),
        1 => (side(), direction()).prop_map(|(s, d)| Op::Disable(s, d)),
        1 => (side(), prop::sample::select(vec![0usize, 1, 7, 64, 500])).prop_map(|(s, h)| Op::High(s, h)),
        3 => (side(), 1..400usize).prop_map(|(s, n)| Op::Read(s, n)),
        1 => side().prop_map(Op::Flush),
    ]
}

/// What the model knows of one direction: everything written into it, and how much
/// of that the reader has taken out.
#[derive(Default)]
struct Stream {
    written: Vec<u8>,
    read: usize,
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (a, b) = BufferEvent::pair();
    let sides: [BufferEvent<Pair>; 2] = [a, b];
    // streams[i]: from side i to side 1 - i.
    let mut streams = [Stream::default(), Stream::default()];
    let mut highs = [0usize; 2];
    let mut forced = [false; 2];
    let mut last_input = [0usize; 2];
    let mut next_byte = 0u8;
    for op in ops {
        match op {
            Op::Write(s, n) => {
                let data: Vec<u8> = (0..n)
                    .map(|_| {
                        next_byte = next_byte.wrapping_add(1);
                        next_byte
                    })
                    .collect();
                streams[s].written.extend_from_slice(&data);
                sides[s].write_now(data).unwrap();
            }
            Op::Enable(s, d) => sides[s].enable(d),
            Op::Disable(s, d) => sides[s].disable(d),
            Op::High(s, h) => {
                highs[s] = h;
                sides[s].set_watermarks(Direction::READ, Watermarks::new(0, h));
            }
            Op::Read(s, n) => {
                let got = sides[s].read(n).await.unwrap();
                let stream = &mut streams[1 - s];
                let expected = &stream.written[stream.read..stream.read + got.len()];
                prop_assert_eq!(&got[..], expected, "bytes arrive in order, once");
                stream.read += got.len();
                forced[s] = false;
            }
            Op::Flush(s) => {
                sides[s].flush(Direction::WRITE, FlushMode::Flush);
                forced[1 - s] = true;
            }
        }
        settle().await;
        for s in 0..2 {
            // Conservation: what side s wrote is read, in the reader's input, or still
            // in side s's output.
            let stream = &streams[s];
            let reader = &sides[1 - s];
            let in_flight = reader.input_len() + sides[s].output_len();
            prop_assert_eq!(
                stream.read + in_flight,
                stream.written.len(),
                "no byte lost or duplicated from side {}",
                s
            );
            // A transfer never takes the reader past its high watermark; it can be
            // above it only if it already was (the mark was lowered, or a flush forced
            // data in), and then it does not grow.
            let high = highs[1 - s];
            let input = reader.input_len();
            if high != 0 && !forced[1 - s] && input > high {
                prop_assert!(
                    input <= last_input[1 - s],
                    "the reader's input grew from {} to {} above its high watermark {}",
                    last_input[1 - s],
                    input,
                    high
                );
            }
            last_input[1 - s] = input;
        }
    }
    // Enable everything, drop the watermarks: all bytes arrive.
    for (s, bev) in sides.iter().enumerate() {
        bev.set_watermarks(Direction::READ, Watermarks::new(0, 0));
        bev.enable(Direction::BOTH);
        highs[s] = 0;
    }
    settle().await;
    for s in 0..2 {
        let rest = sides[1 - s].read(usize::MAX).await.unwrap();
        let stream = &streams[s];
        prop_assert_eq!(&rest[..], &stream.written[stream.read..]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pair_transfers_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(run(ops))?;
    }
}
