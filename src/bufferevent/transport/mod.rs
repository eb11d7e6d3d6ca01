//! What a bufferevent moves bytes through: a stream ([`stream`]), the other element
//! of a pair ([`pair`]), or a filter's underlying bufferevent ([`filter`]).
//!
//! A transport sees one bufferevent through an [`Io`]: its two buffers, its
//! [`Core`], and the state handles read. It moves bytes and reports to the core what
//! happened (bytes moved, EOF, errors, connect outcomes); the core decides what that
//! means. Transports that join bufferevents in one task (pairs, filters) host other
//! engines through the object-safe [`Hosted`] contract, which the engine implements.

pub(crate) mod filter;
mod hangup;
pub(crate) mod pair;
pub(crate) mod stream;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Context as TaskContext;

use tokio::io::{AsyncRead, AsyncWrite};

use super::core::{Core, Due, Ending};
use super::events::Events;
use super::info::TransportInfo;
use super::shared::{Counters, Shared, WakeClock, copy_error};
use crate::buffer::EvBuffer;

/// What a bufferevent can run over: any byte stream a Tokio task can own.
///
/// Implemented for every `AsyncRead + AsyncWrite + Send + Unpin + 'static` type:
/// `TcpStream`, `UnixStream`, `tokio::io::DuplexStream`, TLS streams, ...
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A connect in progress (`bufferevent_socket_connect`): yields the transport and
/// what handles may know of it.
pub(crate) type Connecting<T> =
    Pin<Box<dyn Future<Output = io::Result<(T, TransportInfo)>> + Send>>;

/// Work that goes on in a task after its own bufferevent ended: bufferevents it hosts.
pub(crate) type Hosting = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What an engine moves bytes through.
///
/// `poll_input` runs before the read callback and `poll_output` after it, so an echo
/// callback's output goes out in the same pass as the input that caused it. Only
/// what every transport needs is here; stream-, pair- and filter-only hooks live on
/// their own types and on [`Hosted`].
pub(crate) trait Link: Send + Sized + 'static {
    /// The transport type handles know (`BufferEvent`'s `T`).
    type Transport: Send + 'static;

    /// Brings data in (and anything else that is not sending); whether anything
    /// happened.
    fn poll_input(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool;

    /// Sends data out; whether anything happened.
    fn poll_output(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool;

    /// `bufferevent_setfd` and `bufferevent_socket_connect`: a new transport now, or
    /// one once the connect completes. Transports that cannot take one drop it.
    fn attach(&mut self, io: &mut Io<'_>, attach: Attach<Self::Transport>) {
        let _ = (io, attach);
    }

    /// The transport, for `into_inner`.
    fn take_transport(&mut self) -> Option<Self::Transport> {
        None
    }

    /// Whether a transport was attached at once (`set_transport`, `set_tcp`) since
    /// last asked, here or beneath: a filter above shows it as its own.
    fn take_new_transport(&mut self) -> bool {
        false
    }

    /// Whether data can still come or go: a transport, a connect under way, a partner.
    fn is_attached(&self) -> bool;

    /// Whether a connect is under way with no transport in place yet: a close with
    /// nothing to send need not wait for it.
    fn only_connecting(&self) -> bool {
        false
    }

    /// Whether what lay beyond is gone for good, so nothing can come in or leave any
    /// more: a pair's partner; beneath a filter, whatever strands its underlying.
    fn stranded(&self) -> bool {
        false
    }

    /// Whether data is streaming in, so the input's memory is worth keeping.
    fn streaming(&self) -> bool {
        false
    }

    /// Whether the link holds nothing of ours still to send (a filter: everything
    /// written has left the underlying bufferevent too).
    fn is_idle(&self) -> bool {
        true
    }

    /// Whether [`beyond_unreachable`](Self::beyond_unreachable) can ever hold: only a
    /// pair's first element hosts a partner that may become unreachable (a constant,
    /// so other links pay nothing for the question).
    const MAY_STRAND_ITS_HOST: bool = false;

    /// Whether nothing lies beyond the link that anything outside the task can reach,
    /// nor will (a pair's partner with no handle, nothing to send and no timer), so
    /// that a bufferevent as unreachable itself is over. `for_host`: asked by the
    /// engine that hosts this one, which judges itself (what lies beyond a pair's
    /// second element is its host).
    fn beyond_unreachable(&self, for_host: bool) -> bool {
        let _ = for_host;
        false
    }

    /// Whether the stream over this link has an end of its own to send before it
    /// goes (a filter: a compressor's last block, TLS's `close_notify`), so that a
    /// bufferevent about to end with no handle left closes instead (D-F6).
    fn ends_with_a_close(&self) -> bool {
        false
    }

    /// Bytes of ours the link still holds unsent (a filter: what is left in the
    /// bufferevents beneath it), for `closed()`.
    fn unsent(&mut self) -> usize {
        0
    }

    /// Whatever this link hosts: pairs and filters run other engines.
    fn hosted(&mut self) -> Option<&mut dyn Hosts> {
        None
    }

    /// The bufferevent ended, as `how` says (a transport that can is reset after a
    /// failure, and let go gently after a completed close); says what takes its
    /// place.
    fn finish(self, how: Ending) -> Ended {
        let _ = how;
        Ended::Gone(None)
    }
}

/// A transport for a stream bufferevent, now or later.
pub(crate) enum Attach<T> {
    /// `bufferevent_setfd`, with what handles were shown of the transport: the task
    /// shows it again as it installs it, over anything a connect it replaces stored
    /// meanwhile.
    Now(T, Box<TransportInfo>),
    /// A connect under way; for a hostname, with the mark its lookup sets as it ends
    /// (both directions wait until then, B-53).
    Connecting(Connecting<T>, Option<LookupDone>),
}

/// Set by a hostname connect once its lookup is over, whatever its outcome.
pub(crate) type LookupDone = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// The hooks of links that host other engines (pairs and filters).
pub(crate) trait Hosts {
    /// This engine now runs on a different task: forget the wakers of the old one
    /// in what the link hosts.
    fn forget_wakers(&mut self);

    /// The buffers of the pair element at the bottom of this link, for its partner's
    /// transfers: the element itself (`own`), or a filter's underlying element.
    fn pair_io<'a>(&'a mut self, own: Io<'a>) -> Option<Io<'a>>;

    /// The pair element at the bottom of this link lost its partner.
    fn partner_gone(&mut self, own: &mut Io<'_>);

    /// The host yields before a quiet pass: what the link hosts publishes for its
    /// handles now (it otherwise does once a pass of its own changes nothing).
    fn publish_hosted(&mut self);

    /// The host's wake-up ends: what the link hosts tallies its statistics.
    fn tally_hosted(&mut self, clock: &mut WakeClock);

    /// Whether this link's engine may take input a partner moves to it before its
    /// pass as if moved after it (see [`Hosted::takes_input_early`]): true of a pair
    /// element; not of a filter, whose pass decides what its underlying may read.
    fn lets_input_in_early(&mut self) -> bool;

    /// After a pass of the host that changed something: whether what this link hosts
    /// would find nothing to do in the next (see [`Hosted::settled`]); false when
    /// only a pass can tell.
    fn settled(&mut self) -> bool;

    /// The host's wake-up ends without a quiet pass: what the link hosts ends its
    /// wake-up as that pass would have ended it (see [`Hosted::settle`]). Whether
    /// that calls for a pass after all.
    fn settle_hosted(&mut self) -> bool;
}

/// What takes an ended bufferevent's place in its task.
pub(crate) enum Ended {
    /// Nothing, or work that must still run (bufferevents it hosted).
    Gone(Option<Hosting>),
    /// A filter released its underlying bufferevent, which goes on in its place.
    Replaced(Box<dyn Hosted>),
}

/// Runs a hosted bufferevent's end; what must still run afterwards.
pub(crate) fn end_hosted(hosted: Box<dyn Hosted>) -> Option<Hosting> {
    match hosted.end_into() {
        Ended::Gone(rest) => rest,
        Ended::Replaced(successor) => Some(successor.run_alone()),
    }
}

/// An engine run by another engine's task: a pair's second element, or a filter's
/// underlying bufferevent. Object safe, so a filter need not know its underlying's
/// types.
pub(crate) trait Hosted: Send + 'static {
    /// One pass: commands, I/O and timers, and the callbacks unless `dispatch` is
    /// false (a filter takes the underlying's callbacks' place). Whether anything
    /// happened.
    fn poll_pass(&mut self, cx: &mut TaskContext<'_>, dispatch: bool) -> bool;
    /// The buffers and state a host works with.
    fn io(&mut self) -> Io<'_>;
    /// The pair element at the bottom (see [`Hosts::pair_io`]).
    fn pair_io(&mut self) -> Option<Io<'_>>;
    /// The pair element at the bottom lost its partner.
    fn partner_gone(&mut self);
    /// A filter that asked to wrap this bufferevent.
    fn take_wrap(&mut self) -> Option<Box<dyn Wrapper>>;
    /// Publishes for its handles (and those of what it hosts in turn).
    fn publish(&mut self);
    /// Tallies its statistics (and those of what it hosts in turn); see
    /// [`Hosts::tally_hosted`].
    fn tally(&mut self, clock: &mut WakeClock);
    /// Whether input its partner moves to it before its pass is taken as if moved
    /// after it: no command of its handles waits (those were sent first), its last
    /// handle did not go unnoticed (that may end it with the input unread), and no
    /// filter lies between (see [`Hosts::lets_input_in_early`]).
    fn takes_input_early(&mut self) -> bool;
    /// After a pass that changed something: whether its next pass would change
    /// nothing: it is not over, nothing is left to do in it or in what it hosts, and
    /// no news can come without waking the task.
    fn settled(&mut self) -> bool;
    /// Ends a wake-up of the host whose quiet pass did not run: publishes for its
    /// handles and gives back memory, as its own quiet pass would have. Whether
    /// publishing calls for a pass after all (input handed to a reader lifted a
    /// watermark pause).
    fn settle(&mut self) -> bool;
    /// See [`Hosts::forget_wakers`]; also this engine's own mailbox.
    fn forget_wakers(&mut self);
    /// Takes the due callbacks instead of running them, recording the events as
    /// delivered.
    fn take_due(&mut self) -> Due;
    /// Whether this bufferevent is over.
    fn is_done(&self) -> bool;
    /// Its link is stranded (see [`Link::stranded`]).
    fn stranded(&self) -> bool;
    /// What handles know of the transport.
    fn info(&self) -> TransportInfo;
    /// See [`Link::take_new_transport`].
    fn take_new_transport(&mut self) -> bool;
    /// Bytes still to send: in its output, and beneath it.
    fn unsent(&mut self) -> usize;
    /// Whether nothing outside the task can make it act, nor anything beyond it (see
    /// [`Link::beyond_unreachable`]).
    fn unreachable(&self) -> bool;
    /// Whether everything asked of its write side is done, beneath it too (a
    /// filter's: all it was given has left its own underlying).
    fn write_finished(&mut self) -> bool;
    /// Ends this bufferevent; says what takes its place.
    fn end_into(self: Box<Self>) -> Ended;
    /// Runs this bufferevent on its own until it ends.
    fn run_alone(self: Box<Self>) -> Hosting;
    /// A filter takes this bufferevent over: its callbacks are removed, both
    /// directions enabled, and it lives on without handles.
    fn take_over(&mut self);
    /// The filter let go: no more filter suspension, and handles matter again.
    fn release(&mut self);
}

/// A new filtering bufferevent, not yet in place.
pub(crate) trait Wrapper: Hosted {
    /// Puts `underlying` under this filter and takes it over.
    fn set_underlying(&mut self, underlying: Box<dyn Hosted>);
    /// Its underlying bufferevent ended before the filter got it.
    fn orphan(&mut self);
}

/// A filter on its way to the bufferevent it wraps. If it never arrives (that
/// bufferevent ended, or is already filtered), it runs on its own and reports it.
pub(crate) struct PendingFilter {
    filter: Option<Box<dyn Wrapper>>,
    runtime: tokio::runtime::Handle,
}

impl PendingFilter {
    pub(crate) fn new(filter: Box<dyn Wrapper>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            filter: Some(filter),
            runtime,
        }
    }

    pub(crate) fn take(mut self) -> Box<dyn Wrapper> {
        self.filter.take().expect("taken once")
    }
}

impl Drop for PendingFilter {
    fn drop(&mut self) {
        if let Some(mut filter) = self.filter.take() {
            filter.orphan();
            let hosted: Box<dyn Hosted> = filter;
            self.runtime.spawn(hosted.run_alone());
        }
    }
}

/// A view of one bufferevent's buffers and decisions, free of its type parameters.
pub(crate) struct Io<'a> {
    pub(crate) input: &'a mut EvBuffer,
    pub(crate) output: &'a mut EvBuffer,
    pub(crate) core: &'a mut Core,
    /// What handles read; `None` once no handle can (see `shared.rs`).
    pub(crate) shared: Option<&'a Shared>,
    /// Where statistics go; `None` when nobody can read them.
    pub(crate) counters: Option<&'a Counters>,
}

impl Io<'_> {
    /// `n` bytes were appended to the input: counted for handles, if any can look.
    pub(crate) fn count_read(&self, n: usize) {
        if let Some(counters) = self.counters {
            counters.read(n, self.input.len());
        }
    }

    /// `n` bytes left an output that held `before`: counted for handles, if any can
    /// look.
    pub(crate) fn count_written(&self, n: usize, before: usize) {
        if let Some(counters) = self.counters {
            counters.written(n, before);
        }
    }

    /// The pair partner or the underlying bufferevent is gone: the core hears it
    /// (`EOF` if asked for), and handles learn that nothing more can come or leave.
    pub(crate) fn partner_gone(&mut self) {
        self.core.on_partner_gone();
        if let Some(shared) = self.shared {
            shared.strand();
        }
    }

    /// Wakes the handles' waiters (if any handle can still wait).
    pub(crate) fn changed(&self) {
        if let Some(shared) = self.shared {
            shared.changed();
        }
    }

    /// Reading stops for good: EOF or an error.
    pub(crate) fn end_reading(&mut self, events: Events, error: Option<io::Error>) {
        tracing::debug!(?events, ?error, "reading ended");
        self.publish_read_error(error.as_ref());
        self.core.on_read_end(events, error);
    }

    /// Nothing more will be read, though the enabled set stays as is (a filter whose
    /// underlying bufferevent stopped reading).
    pub(crate) fn read_closed(&mut self, error: Option<&io::Error>) {
        self.publish_read_error(error);
        self.core.on_read_closed();
    }

    /// Adapters report the read error at the end of the stream, whatever happens
    /// after it; the event callback gets the error itself.
    fn publish_read_error(&self, error: Option<&io::Error>) {
        if let Some(shared) = self.shared {
            shared.set_read_error(error.map(copy_error));
        }
    }

    /// Writing stops for good. Queued output stays in the output buffer and is
    /// reported by `closed()`.
    pub(crate) fn end_writing(&mut self, events: Events, error: Option<io::Error>) {
        tracing::debug!(?events, ?error, unsent = self.output.len(), "writing ended");
        self.core.on_write_end(events, error);
    }

    /// Whether everything asked of the write side is done: sent, flushed, shut down.
    pub(crate) fn write_finished(&self) -> bool {
        self.core.write_finished(self.output.len())
    }
}
