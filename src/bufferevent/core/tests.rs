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

#[test]
fn close_ends_once_the_write_half_is_done_and_free_at_once() {
    let mut core = Core::default();
    core.close();
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
