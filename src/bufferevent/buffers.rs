//! A bufferevent's input and output buffers, kept out of line and only while they
//! hold something.
//!
//! Every bufferevent's task carries its buffers, and a server holds thousands of
//! idle connections whose buffers are empty. Inline, the two buffers made the task
//! future 192 bytes larger and put every Tokio task cell in the allocator's 512-byte
//! class; out of line (24 bytes: a pointer, a generation and two tail sizes) they
//! keep it in the 384-byte class (`docs/PERFORMANCE.md`, "The fifth session"). Every
//! pass of the task takes the pair if it was given back, and the task gives it back
//! as it goes idle with both buffers pristine and no data streaming in, unless a
//! handle can reach the bufferevent (its next call would take the pair back at once)
//! or another task's engine hosts it: a bufferevent that streams keeps one pair
//! across its passes, and an idle connection holds none. What a pair given back
//! would carry on with (the generation positions check, the size its tails grew to)
//! stays with the bufferevent, not the pair.
//!
//! A connection that answers each message and goes idle again takes and gives back
//! a pair per message. Allocating and freeing it each time cost 12 % more
//! instructions per echoed message; instead each thread keeps a few pairs given back
//! for the next ones taken, and the cost is up to 5 %. Tasks run one at a time on a
//! thread, so a few spares serve a thread's connections in turn.

use std::cell::RefCell;

use crate::buffer::EvBuffer;

/// The two buffers, allocated together.
#[derive(Debug)]
pub(crate) struct InOut {
    pub(crate) input: EvBuffer,
    pub(crate) output: EvBuffer,
}

/// Pristine pairs kept per thread for reuse (about 1.6 KiB); beyond this they are
/// freed. Several tasks may go idle on a thread before the next one runs (and a
/// pair taken anew while the spares are empty is allocated), so a few are kept.
const SPARES: usize = 8;

thread_local! {
    /// Pairs given back on this thread, every buffer in them pristine. Boxed: the
    /// point is to reuse their allocations.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<InOut>>> = const { RefCell::new(Vec::new()) };
}

/// A pristine pair whose generations start at `generation` and whose next tails
/// are `next_tails`: one of the thread's spares if it has one.
fn take_pair(generation: u64, [input_tail, output_tail]: [u32; 2]) -> Box<InOut> {
    let spare = SPARE.try_with(|spare| spare.borrow_mut().pop());
    match spare.ok().flatten() {
        Some(mut pair) => {
            pair.input.restart_at(generation, input_tail);
            pair.output.restart_at(generation, output_tail);
            pair
        }
        None => Box::new(InOut {
            input: EvBuffer::starting_at(generation, input_tail),
            output: EvBuffer::starting_at(generation, output_tail),
        }),
    }
}

/// Keeps a pristine pair as one of the thread's spares, or frees it if they are
/// enough (or gone, as the thread ends).
fn give_back_pair(pair: Box<InOut>) {
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES {
            spare.push(pair);
        }
    });
}

/// A bufferevent's buffers: none while both would be empty and hold no memory.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    held: Option<Box<InOut>>,
    /// Where the next pair's generations start: past every generation of pairs
    /// given back, so that a [`Position`](crate::buffer::Position) taken from one
    /// of those is never mistaken for a current one.
    next_generation: u64,
    /// The next tail each buffer of the pair given back would have allocated (0:
    /// as a new buffer's): a bufferevent that streams allocates as large tails with
    /// the next pair, and one that does not is not handed another's.
    next_tails: [u32; 2],
}

impl Buffers {
    /// Both buffers, allocated if they were given back.
    #[inline]
    pub(crate) fn get(&mut self) -> &mut InOut {
        let (generation, tails) = (self.next_generation, self.next_tails);
        self.held
            .get_or_insert_with(|| take_pair(generation, tails))
    }

    /// The input, allocated if the buffers were given back.
    #[inline]
    pub(crate) fn input(&mut self) -> &mut EvBuffer {
        &mut self.get().input
    }

    /// The output, allocated if the buffers were given back.
    #[inline]
    pub(crate) fn output(&mut self) -> &mut EvBuffer {
        &mut self.get().output
    }

    /// The input's length, allocating nothing.
    #[inline]
    pub(crate) fn input_len(&self) -> usize {
        self.held.as_ref().map_or(0, |b| b.input.len())
    }

    /// The output's length, allocating nothing.
    #[inline]
    pub(crate) fn output_len(&self) -> usize {
        self.held.as_ref().map_or(0, |b| b.output.len())
    }

    /// The input's and the output's lengths, allocating nothing.
    #[inline]
    pub(crate) fn lens(&self) -> (usize, usize) {
        self.held
            .as_ref()
            .map_or((0, 0), |b| (b.input.len(), b.output.len()))
    }

    /// Whether the pair is allocated.
    #[cfg(test)]
    pub(crate) fn are_held(&self) -> bool {
        self.held.is_some()
    }

    /// Gives back memory the buffers no longer need, as the task goes idle: a
    /// drained input (unless data is streaming in, when it would be allocated again
    /// at once) and a drained output release their tails, as libevent frees drained
    /// chains; with `whole`, unless data is streaming in, once both are pristine the
    /// pair itself goes.
    #[inline]
    pub(crate) fn release_idle_memory(&mut self, streaming: bool, whole: bool) {
        let Some(held) = self.held.as_deref_mut() else {
            return;
        };
        let input = &mut held.input;
        if input.is_empty() && !streaming && input.has_spare_memory() {
            input.shrink_to_fit();
        }
        let output = &mut held.output;
        if output.is_empty() && output.has_spare_memory() {
            output.shrink_to_fit();
        }
        if whole && !streaming && held.input.is_pristine() && held.output.is_pristine() {
            self.next_generation = held.input.generation().max(held.output.generation()) + 1;
            self.next_tails = [held.input.next_tail(), held.output.next_tail()];
            if let Some(pair) = self.held.take() {
                give_back_pair(pair);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_pair_is_not_given_back_while_data_streams_in() {
        let mut buffers = Buffers::default();
        buffers.get();
        buffers.release_idle_memory(true, true);
        assert!(buffers.are_held());
        buffers.release_idle_memory(false, false);
        assert!(buffers.are_held(), "not the whole pair");
        buffers.release_idle_memory(false, true);
        assert!(!buffers.are_held());
    }

    /// A tail of exactly one message's size (a small read), emptied by taking the
    /// message out whole, keeps nothing of it: a pair given back (or an idle buffer)
    /// holds no memory of its last message.
    #[test]
    fn a_pair_given_back_holds_nothing_of_its_last_message() {
        let mut buffers = Buffers::default();
        buffers.input().stage_copy(b"one message");
        buffers.input().commit_appended(11);
        let message = buffers.input().remove_bytes(11).unwrap();
        assert!(
            message.is_unique(),
            "the emptied tail shares the message's memory"
        );
        buffers.release_idle_memory(false, true);
        assert!(!buffers.are_held());

        // Sealed whole into a chunk by an append of bytes, likewise.
        buffers.input().stage_copy(b"one message");
        buffers.input().commit_appended(11);
        buffers
            .input()
            .add_bytes(Bytes::from_static(b"more"))
            .unwrap();
        let message = buffers.input().remove_bytes(11).unwrap();
        assert!(
            message.is_unique(),
            "the sealed tail shares the message's memory"
        );
    }

    /// A pair whose input grew its tails while streaming, then handed its data on
    /// whole (the echo's `append_input` swaps the tail away, leaving the input
    /// pristine): the next user of the pair starts with small tails again, and the
    /// bufferevent that grew them goes on with large ones.
    #[test]
    fn tails_grow_per_bufferevent_not_per_pair() {
        let mut a = Buffers::default();
        for _ in 0..32 {
            a.input().add(&[0; 4096]).unwrap();
        }
        let mut elsewhere = EvBuffer::new();
        elsewhere.append_buffer(a.input());
        a.release_idle_memory(false, true);
        assert!(!a.are_held());

        let mut b = Buffers::default();
        b.input().add(b"x").unwrap();
        let room = b.input().spare_capacity();
        assert!(
            room < 4096,
            "the pair's next tail kept its growth: {room} bytes"
        );

        a.input().add(b"x").unwrap();
        let room = a.input().spare_capacity();
        assert!(
            room >= 4096,
            "the bufferevent's next tail shrank: {room} bytes"
        );
    }

    #[test]
    fn drained_buffers_are_given_back_and_come_back_empty() {
        let mut buffers = Buffers::default();
        assert_eq!(buffers.input_len(), 0);
        buffers.input().add(b"hello").unwrap();
        buffers.release_idle_memory(false, true);
        assert_eq!(buffers.input_len(), 5, "data keeps the buffers");
        assert!(buffers.held.is_some());

        buffers.input().drain(5).unwrap();
        buffers.release_idle_memory(true, true);
        assert!(buffers.held.is_some(), "a streaming input keeps its memory");
        assert!(buffers.input().has_spare_memory());
        buffers.release_idle_memory(false, true);
        assert!(buffers.held.is_none(), "pristine buffers are given back");
        assert_eq!((buffers.input_len(), buffers.output_len()), (0, 0));
        assert_eq!(buffers.lens(), (0, 0));
        assert!(buffers.output().is_empty());
    }

    /// Takes a position in `a`'s input at generation 1, then empties and releases
    /// `a`'s pair.
    fn position_then_release(a: &mut Buffers) -> crate::buffer::Position {
        a.input().add(b"a\nb\n").unwrap();
        let pos = a.input().position(2).expect("in range");
        a.input().drain(4).unwrap();
        a.release_idle_memory(false, true);
        assert!(!a.are_held());
        pos
    }

    /// A new pair changed as often as the old one was when the position was taken:
    /// its generation must not come back to the position's, whether the pair is
    /// allocated anew or another bufferevent's untouched one from the pool.
    #[test]
    fn a_position_from_buffers_given_back_stays_stale() {
        // Allocated anew: `b` took the pair `a` gave back.
        let (mut a, mut b) = (Buffers::default(), Buffers::default());
        let mut pos = position_then_release(&mut a);
        b.get();
        a.input().add(b"xyzw").unwrap();
        assert!(a.input().advance_position(&mut pos, 1).is_err());

        // From the pool: `b`'s pair, never changed, is the next one taken.
        let (mut a, mut b) = (Buffers::default(), Buffers::default());
        b.get();
        let mut pos = position_then_release(&mut a);
        b.release_idle_memory(false, true);
        a.input().add(b"xyzw").unwrap();
        assert!(a.input().advance_position(&mut pos, 1).is_err());
    }
}
