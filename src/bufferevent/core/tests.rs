//! The core on its own: no runtime, no clock but the `now` values the tests pass.

use std::time::{Duration, Instant};

use super::*;

fn reading_core() -> Core {
    Core::new(Settings {
        enabled: Direction::BOTH,
        ..Settings::default()
    })
}

#[test]
fn defaults_are_libevents() {
    let core = Core::default();
    assert_eq!(core.enabled(), Direction::WRITE);
    assert!(!core.reading());
    assert!(core.writing());
    assert_eq!(core.read_watermarks(), Watermarks::new(0, 0));
    assert_eq!(core.write_watermarks(), Watermarks::new(0, 0));
    assert_eq!(core.timeouts(), (None, None));
    assert_eq!(core.max_single_read(), 16384);
    assert_eq!(core.max_single_write(), 16384);
}

#[test]
fn read_budget_never_passes_the_high_watermark() {
    let mut core = reading_core();
    assert_eq!(core.read_budget(0), 16384);
    core.set_watermarks(Direction::READ, Watermarks::new(0, 8), 0);
    assert_eq!(core.read_budget(0), 8);
    assert_eq!(core.read_budget(5), 3);
    core.on_read(8);
    assert!(!core.reading(), "suspended at the high watermark");
    assert_eq!(core.read_budget(8), 0);
    core.on_input_removed(7);
    assert!(core.reading(), "any removal below the mark resumes");
    assert_eq!(
        core.enabled(),
        Direction::BOTH,
        "suspension is not disablement"
    );
}

#[test]
fn watermark_changes_reevaluate_suspension_both_ways() {
    let mut core = reading_core();
    core.set_watermarks(Direction::READ, Watermarks::new(0, 10), 20);
    assert!(!core.reading());
    core.set_watermarks(Direction::READ, Watermarks::new(0, 0), 20);
    assert!(core.reading());
}

#[test]
fn low_watermarks_gate_callbacks() {
    let mut core = Core::default();
    core.set_watermarks(Direction::BOTH, Watermarks::new(10, 0), 0);
    core.on_read(9);
    assert!(!core.take_due().read);
    core.on_read(10);
    assert!(core.take_due().read);
    core.on_written(11);
    assert!(!core.take_due().write);
    core.on_written(10);
    assert!(core.take_due().write);
}

#[test]
fn events_accumulate_and_forget_clears() {
    let mut core = Core::default();
    core.event(Events::READING | Events::EOF, None);
    core.event(Events::WRITING | Events::TIMEOUT, None);
    core.trigger(Direction::READ, true, 0, 0);
    let due = core.take_due();
    assert_eq!(due.events.bits(), 0x53);
    assert!(due.read);
    core.trigger(Direction::READ, true, 0, 0);
    core.forget(true, false, false);
    assert!(!core.has_due());
}

#[test]
fn trigger_honours_watermarks_unless_ignored() {
    let mut core = Core::default();
    core.set_watermarks(Direction::READ, Watermarks::new(5, 0), 0);
    core.trigger(Direction::READ, false, 4, 0);
    assert!(!core.has_due());
    core.trigger(Direction::READ, true, 4, 0);
    assert!(core.take_due().read);
    core.trigger(Direction::WRITE, false, 0, 0);
    assert!(core.take_due().write);
}

#[test]
fn b014_enable_write_with_an_empty_output_owes_one_write_callback() {
    let mut core = Core::default();
    core.enable(Direction::WRITE, 0, 0);
    assert!(core.take_write_ready());
    assert!(!core.take_write_ready(), "one callback, not a storm");
    core.enable(Direction::WRITE, 0, 5);
    assert!(
        !core.take_write_ready(),
        "with output queued, the write itself reports"
    );
}

#[test]
fn b050_a_connect_with_nothing_queued_gives_connected_and_no_write_callback() {
    let mut core = Core::default();
    core.enable(Direction::READ | Direction::WRITE, 0, 0); // no transport yet
    core.on_connected();
    assert!(!core.take_write_ready());
    let due = core.take_due();
    assert!(due.connected && !due.write);
}

#[test]
fn b022_enabling_read_announces_waiting_data_once() {
    let mut core = Core::default();
    core.enable(Direction::READ, 3, 0);
    assert!(core.take_due().read);
    core.enable(Direction::READ, 3, 0);
    assert!(!core.take_due().read, "already reading: no repeat");
    core.disable(Direction::READ);
    core.set_watermarks(Direction::READ, Watermarks::new(4, 0), 3);
    core.enable(Direction::READ, 3, 0);
    assert!(!core.take_due().read, "below the low watermark");
}

#[test]
fn b097_max_single_limits_reset_to_the_default_on_zero() {
    let mut core = reading_core();
    core.set_max_single(Some(100), Some(7));
    assert_eq!(core.read_budget(0), 100);
    assert_eq!(core.write_budget(), 7);
    core.set_max_single(Some(0), None);
    assert_eq!(core.max_single_read(), 16384);
    assert_eq!(core.max_single_write(), 7);
    core.set_max_single(None, Some(usize::MAX));
    assert_eq!(core.max_single_write(), 16384);
    assert!(core.take_settings_changed());
    assert!(!core.take_settings_changed());
}

#[test]
fn a_read_timeout_runs_only_while_reading_and_restarts_on_data() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut core = reading_core();
    core.set_timeouts(Some(ms(100)), None);
    assert_eq!(core.poll_timeout(t0, 0), Some(t0 + ms(100)));
    // Data at 60 ms pushes the deadline back to a full interval.
    core.on_read(1);
    assert_eq!(core.poll_timeout(t0 + ms(60), 0), Some(t0 + ms(160)));
    assert!(!core.handle_timeout(t0 + ms(159)));
    assert!(core.handle_timeout(t0 + ms(160)));
    assert!(!core.enabled().contains(Direction::READ), "B-34: disabled");
    let due = core.take_due();
    assert_eq!(due.events, Events::READING | Events::TIMEOUT);
    assert_eq!(
        core.poll_timeout(t0 + ms(200), 0),
        None,
        "disabled: no timer"
    );
}

#[test]
fn a_write_timeout_runs_only_with_something_to_write() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut core = Core::default();
    core.set_timeouts(None, Some(ms(50)));
    assert_eq!(core.poll_timeout(t0, 0), None);
    assert_eq!(core.poll_timeout(t0 + ms(10), 4), Some(t0 + ms(60)));
    assert!(core.handle_timeout(t0 + ms(60)));
    assert_eq!(core.take_due().events, Events::WRITING | Events::TIMEOUT);
}

#[test]
fn reading_ends_for_good_at_eof() {
    let mut core = reading_core();
    core.on_read_end(Events::READING | Events::EOF, None);
    assert_eq!(core.read_budget(0), 0);
    assert!(!core.enabled().contains(Direction::READ));
    core.enable(Direction::READ, 0, 0);
    assert_eq!(
        core.read_budget(0),
        0,
        "enabled again, but the half is closed"
    );
    core.on_transport();
    assert_eq!(core.read_budget(0), 16384, "a new transport reopens it");
}

#[test]
fn a_finished_flush_shuts_down_once_the_output_is_sent() {
    let mut core = Core::default();
    core.flush(Direction::WRITE, FlushMode::Finished);
    let flushes: Vec<_> = core.take_flushes().collect();
    assert_eq!(flushes, [(Direction::WRITE, FlushMode::Finished)]);
    core.request_shutdown();
    assert!(!core.shutdown_due(3));
    assert!(!core.write_finished(3));
    assert!(core.shutdown_due(0));
    core.on_shutdown();
    assert!(core.write_finished(0) && core.write_closed());
    assert_eq!(core.write_budget(), 0);
}

/// A close asked for before the connect completed still shuts the new transport
/// down once the output is sent (found in review: the connect used to reopen the
/// write half and forget the shutdown, so `close()` never finished).
#[test]
fn a_close_before_the_connect_still_shuts_down_after_it() {
    let mut core = Core::default();
    core.close(None);
    for (dirs, mode) in core.take_flushes() {
        assert_eq!((dirs, mode), (Direction::WRITE, FlushMode::Finished));
        core.request_shutdown();
    }
    core.on_connected();
    assert!(!core.shutdown_due(5), "the output goes first");
    assert!(core.shutdown_due(0));
}

#[test]
fn close_ends_once_the_write_half_is_done_and_free_at_once() {
    let mut core = Core::default();
    core.close(None);
    assert!(core.closing() && core.has_flushes());
    assert!(!core.is_over(0, true, true, true, true));
    core.on_shutdown();
    assert!(core.is_over(0, true, true, true, true));

    let mut core = Core::default();
    core.event(Events::EOF, None);
    core.free();
    assert!(core.is_over(0, true, true, true, true));
    assert!(core.take_due().is_empty(), "no callback after free (B-56)");
}

#[test]
fn without_observers_it_ends_once_nothing_more_can_happen() {
    let core = reading_core();
    // (output, attached, link idle, observed, callbacks)
    assert!(
        !core.is_over(0, true, true, false, true),
        "callbacks and a peer to serve"
    );
    assert!(
        core.is_over(0, true, true, false, false),
        "no callback, nothing to send"
    );
    assert!(
        !core.is_over(5, true, true, false, false),
        "output still to send"
    );
    assert!(core.is_over(5, false, true, false, true), "no transport");
    let mut eof = reading_core();
    eof.on_read_end(Events::READING | Events::EOF, None);
    assert!(
        eof.is_over(0, true, true, false, true),
        "the peer finished, all sent"
    );
}

/// The watermark, callback and timeout rules as a model: a few lines per rule,
/// written from libevent's description rather than from the core.
mod model {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    const READ_TIMEOUT_MS: u64 = 50;
    const MAX_SINGLE: usize = 64;

    #[derive(Clone, Debug)]
    enum Op {
        /// The peer sent `n` bytes; the transport reads what the budget allows.
        Arrive(usize),
        /// The user removed up to `n` bytes of input.
        Remove(usize),
        /// The user queued `n` bytes of output.
        Write(usize),
        /// The transport took up to `n` bytes of output.
        Send(usize),
        Enable(Direction),
        Disable(Direction),
        ReadWatermarks(usize, usize),
        WriteWatermarks(usize, usize),
        /// Time passes.
        Tick(u64),
        /// The engine runs the due callbacks.
        Dispatch,
    }

    fn direction() -> impl Strategy<Value = Direction> {
        prop_oneof![
            Just(Direction::READ),
            Just(Direction::WRITE),
            Just(Direction::BOTH)
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1..200usize).prop_map(Op::Arrive),
            3 => (0..200usize).prop_map(Op::Remove),
            2 => (1..200usize).prop_map(Op::Write),
            3 => (1..200usize).prop_map(Op::Send),
            1 => direction().prop_map(Op::Enable),
            1 => direction().prop_map(Op::Disable),
            1 => (0..40usize, prop_oneof![Just(0usize), 1..120usize])
                .prop_map(|(l, h)| Op::ReadWatermarks(l, h)),
            1 => (0..40usize, 0..120usize).prop_map(|(l, h)| Op::WriteWatermarks(l, h)),
            2 => (1..40u64).prop_map(Op::Tick),
            3 => Just(Op::Dispatch),
        ]
    }

    #[derive(Debug, Default)]
    struct Model {
        read_enabled: bool,
        write_enabled: bool,
        read_wm: Watermarks,
        write_wm: Watermarks,
        input: usize,
        output: usize,
        read_due: bool,
        write_due: bool,
        events: Events,
        /// Milliseconds since the start.
        now: u64,
        read_deadline: Option<u64>,
        restart_read: bool,
    }

    impl Model {
        /// The input is full: reading pauses at the high watermark.
        fn full(&self) -> bool {
            self.read_wm.high != 0 && self.input >= self.read_wm.high
        }

        fn reading(&self) -> bool {
            self.read_enabled && !self.full()
        }

        fn budget(&self) -> usize {
            if !self.reading() {
                return 0;
            }
            let room = match self.read_wm.high {
                0 => usize::MAX,
                high => high - self.input,
            };
            room.min(MAX_SINGLE)
        }

        /// Arms the read deadline while reading, a full interval after the last
        /// restart.
        fn arm(&mut self) {
            if !self.reading() {
                self.read_deadline = None;
            } else if self.read_deadline.is_none() || self.restart_read {
                self.read_deadline = Some(self.now + READ_TIMEOUT_MS);
            }
            self.restart_read = false;
        }
    }

    fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut core = Core::new(Settings {
            read_timeout: Some(Duration::from_millis(READ_TIMEOUT_MS)),
            max_single_read: MAX_SINGLE,
            ..Settings::default()
        });
        let mut m = Model {
            write_enabled: true,
            ..Model::default()
        };
        for op in ops {
            match op {
                Op::Arrive(n) => {
                    let budget = core.read_budget(m.input);
                    prop_assert_eq!(budget, m.budget());
                    let k = n.min(budget);
                    if k > 0 {
                        m.input += k;
                        core.on_read(m.input);
                        m.read_due |= m.input >= m.read_wm.low;
                        m.restart_read = true;
                    }
                }
                Op::Remove(n) => {
                    m.input -= n.min(m.input);
                    core.on_input_removed(m.input);
                }
                Op::Write(n) => m.output += n,
                Op::Send(n) => {
                    let k = if core.write_budget() > 0 && m.write_enabled {
                        n.min(m.output).min(core.write_budget())
                    } else {
                        0
                    };
                    if k > 0 {
                        m.output -= k;
                        core.on_written(m.output);
                        m.write_due |= m.output <= m.write_wm.low;
                    }
                }
                Op::Enable(dirs) => {
                    core.enable(dirs, m.input, m.output);
                    if dirs.contains(Direction::READ) {
                        // Data that waited while READ was off is announced (B-22).
                        if !m.read_enabled && m.input > 0 && m.input >= m.read_wm.low {
                            m.read_due = true;
                        }
                        m.read_enabled = true;
                        m.restart_read = true;
                    }
                    m.write_enabled |= dirs.contains(Direction::WRITE);
                }
                Op::Disable(dirs) => {
                    core.disable(dirs);
                    m.read_enabled &= !dirs.contains(Direction::READ);
                    m.write_enabled &= !dirs.contains(Direction::WRITE);
                }
                Op::ReadWatermarks(low, high) => {
                    let wm = Watermarks::new(low, high);
                    core.set_watermarks(Direction::READ, wm, m.input);
                    m.read_wm = wm;
                }
                Op::WriteWatermarks(low, high) => {
                    let wm = Watermarks::new(low, high);
                    core.set_watermarks(Direction::WRITE, wm, m.input);
                    m.write_wm = wm;
                }
                Op::Tick(ms) => {
                    m.now += ms;
                    core.poll_timeout(at(m.now), m.output);
                    let fired = core.handle_timeout(at(m.now));
                    let expected = m.read_deadline.is_some_and(|d| d <= m.now);
                    prop_assert_eq!(fired, expected, "read timeout at {} ms", m.now);
                    if expected {
                        // B-34: the direction is disabled and the event names it.
                        m.read_enabled = false;
                        m.read_deadline = None;
                        m.events |= Events::READING | Events::TIMEOUT;
                    }
                }
                Op::Dispatch => {
                    let due = core.take_due();
                    prop_assert_eq!(due.read, m.read_due, "read callback due");
                    prop_assert_eq!(due.write, m.write_due, "write callback due");
                    prop_assert_eq!(due.events, m.events);
                    m.read_due = false;
                    m.write_due = false;
                    m.events = Events::empty();
                }
            }
            // The engine asks for the next deadline after every step.
            m.arm();
            let deadline = core.poll_timeout(at(m.now), m.output);
            prop_assert_eq!(deadline, m.read_deadline.map(at), "deadline");
            prop_assert_eq!(core.reading(), m.reading(), "reading");
            prop_assert_eq!(
                core.enabled().contains(Direction::READ),
                m.read_enabled,
                "READ enabled"
            );
            if m.read_wm.high != 0 {
                prop_assert!(core.read_budget(m.input) <= m.read_wm.high.saturating_sub(m.input));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_core_follows_the_model(ops in proptest::collection::vec(op(), 1..80)) {
            run(ops)?;
        }
    }
}

/// A bufferevent's own token buckets against a model: random transfers, refills and
/// decrements.
mod bucket_model {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::super::ratelim::RateLimit;
    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// The transport moved up to `n` bytes in one direction.
        Move(bool, usize),
        /// `decrement_*_limit(n)`; negative gives tokens back.
        Decrement(bool, i64),
        /// Time passes, in milliseconds.
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<bool>(), 1..400usize).prop_map(|(r, n)| Op::Move(r, n)),
            1 => (any::<bool>(), -300..300i64).prop_map(|(r, n)| Op::Decrement(r, n)),
            2 => (1..250u64).prop_map(Op::Wait),
        ]
    }

    fn run(rate: u64, burst: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
        const TICK_MS: u64 = 100;
        let t0 = Instant::now();
        let cfg = RateLimit::new(
            rate,
            burst,
            rate,
            burst,
            Some(Duration::from_millis(TICK_MS)),
        )
        .unwrap();
        let mut core = Core::new(Settings {
            enabled: Direction::BOTH,
            ..Settings::default()
        });
        core.set_rate_limit(Some(cfg));
        core.refill(t0);
        // The model: a bucket per direction, starting at the rate.
        let (rate, burst) = (rate as i64, burst as i64);
        let mut buckets = [rate, rate];
        let (mut now, mut tick) = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Move(read, n) => {
                    let allowed = if read {
                        core.read_budget(0)
                    } else {
                        core.write_budget()
                    };
                    let i = usize::from(!read);
                    prop_assert_eq!(allowed, buckets[i].max(0) as usize, "allowance");
                    let moved = n.min(allowed);
                    if moved > 0 {
                        core.charge(read, moved);
                        buckets[i] -= moved as i64;
                    }
                }
                Op::Decrement(read, n) => {
                    prop_assert!(core.decrement_limit(read, n));
                    buckets[usize::from(!read)] -= n;
                }
                Op::Wait(ms) => {
                    now += ms;
                    core.refill(t0 + Duration::from_millis(now));
                    let ticks = now / TICK_MS - tick;
                    tick = now / TICK_MS;
                    for b in &mut buckets {
                        if *b < burst {
                            *b = (*b + rate * ticks as i64).min(burst);
                        }
                    }
                }
            }
            prop_assert_eq!(core.limit(true), Some(buckets[0]));
            prop_assert_eq!(core.limit(false), Some(buckets[1]));
            // B-98: a direction is silenced exactly while its bucket is at or below 0.
            prop_assert_eq!(core.reading(), buckets[0] > 0, "reading");
            prop_assert_eq!(core.writing(), buckets[1] > 0, "writing");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn buckets_follow_the_model(
            (rate, burst) in (1..200u64).prop_flat_map(|r| (Just(r), r..600u64)),
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            run(rate, burst, ops)?;
        }
    }
}
