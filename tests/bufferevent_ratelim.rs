//! Rate limiting (libevent's `bufferevent_ratelim`, B-94..B-103): per-bufferevent token
//! buckets and groups. Arithmetic on paused time, so every figure is exact; the
//! engine over real loopback sockets where it matters.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_bufferevent::bufferevent::{
    BufferEvent, Direction, Pair, RateLimit, RateLimitError, RateLimitGroup,
};

use common::{expect_within, pattern, settle_task, tcp_pair};

const TICK: Duration = Duration::from_millis(100);

fn limit(rate: u64, burst: u64) -> RateLimit {
    RateLimit::new(rate, burst, rate, burst, Some(TICK)).unwrap()
}

/// A writer and a reader joined by a pair; the reader reads.
fn pair() -> (BufferEvent<Pair>, BufferEvent<Pair>) {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    (a, b)
}

/// How long until `b` holds `n` bytes.
async fn time_to_read(b: &BufferEvent<Pair>, n: usize) -> Duration {
    let started = Instant::now();
    expect_within(b.readable(n)).await;
    assert!(b.input_len() >= n);
    started.elapsed()
}

/// B-94: invalid configurations are refused with the reason.
#[test]
fn b094_configurations_are_validated() {
    let tick = Some(TICK);
    assert!(matches!(
        RateLimit::new(0, 10, 10, 10, tick),
        Err(RateLimitError::ZeroRate { .. })
    ));
    assert!(matches!(
        RateLimit::new(20, 10, 10, 10, tick),
        Err(RateLimitError::RateAboveBurst {
            rate: 20,
            burst: 10,
            ..
        })
    ));
    assert!(matches!(
        RateLimit::new(10, u64::MAX, 10, 10, tick),
        Err(RateLimitError::TooLarge { .. })
    ));
    assert!(matches!(
        RateLimit::new(10, 10, 10, 10, Some(Duration::from_micros(10))),
        Err(RateLimitError::BadTick(_))
    ));
    let error = RateLimit::new(20, 10, 10, 10, tick).unwrap_err();
    assert_eq!(error.to_string(), "the read rate 20 is above its burst 10");
}

/// B-95, B-98: a limited reader gets `rate` bytes per tick, starting with one tick's
/// worth at once.
#[tokio::test(start_paused = true)]
async fn b095_b098_a_read_limit_paces_the_reader() {
    let (a, b) = pair();
    b.set_rate_limit(Some(limit(100, 100)));
    a.write(vec![7u8; 1000]).await.unwrap();
    let took = time_to_read(&b, 1000).await;
    // 100 at once, then 100 per tick: the last arrives at the ninth tick.
    assert_eq!(took, Duration::from_millis(900), "{took:?}");
}

/// The same for a limited writer.
#[tokio::test(start_paused = true)]
async fn a_write_limit_paces_the_writer() {
    let (a, b) = pair();
    a.set_rate_limit(Some(limit(250, 250)));
    a.write(vec![7u8; 1000]).await.unwrap();
    let took = time_to_read(&b, 1000).await;
    assert_eq!(took, Duration::from_millis(300), "{took:?}");
}

/// B-96, B-97: with a limit, the bucket replaces `max_single_read` in the budget.
#[tokio::test(start_paused = true)]
async fn b096_the_bucket_replaces_max_single() {
    let (_a, b) = pair();
    assert_eq!(b.max_to_read().await.unwrap(), 16384);
    b.set_rate_limit(Some(limit(50_000, 50_000)));
    assert_eq!(
        b.max_to_read().await.unwrap(),
        50_000,
        "not capped at 16 KiB"
    );
    b.set_rate_limit(Some(limit(10, 10)));
    assert_eq!(
        b.max_to_read().await.unwrap(),
        10,
        "clipped to the new burst"
    );

    // Without a bucket of its own, a group member's share is capped by
    // `max_single_read`/`write`: the first term of the minimum.
    let (_c, d) = pair();
    let group = RateLimitGroup::new(limit(1_000_000, 1_000_000));
    group.add(&d);
    settle_task(&d).await;
    assert_eq!(d.max_to_read().await.unwrap(), 16384);
    d.set_max_single_read(100);
    d.set_max_single_write(200);
    assert_eq!(d.max_to_read().await.unwrap(), 100);
    assert_eq!(d.max_to_write().await.unwrap(), 200);
}

/// B-98, B-99: a bucket driven negative silences the direction for as many ticks as
/// the refill takes; giving tokens back resumes it at once.
#[tokio::test(start_paused = true)]
async fn b098_b099_a_negative_bucket_silences_for_several_ticks() {
    let (a, b) = pair();
    b.set_rate_limit(Some(limit(100, 100)));
    b.decrement_read_limit(250);
    assert_eq!(b.read_limit().await.unwrap(), Some(-150));
    assert_eq!(b.write_limit().await.unwrap(), Some(100));
    a.write(&b"late"[..]).await.unwrap();
    // -150 + 100 = -50 after one tick, +50 after two: then it reads.
    assert_eq!(time_to_read(&b, 4).await, Duration::from_millis(200));

    b.decrement_read_limit(1000);
    a.write(&b"back"[..]).await.unwrap();
    let started = Instant::now();
    b.decrement_read_limit(-2000);
    expect_within(b.readable(8)).await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "tokens given back resume it"
    );
    assert!(b.read_limit().await.unwrap().unwrap() > 0);
}

/// B-99: without an own limit there is no bucket, and decrementing does nothing.
#[tokio::test(start_paused = true)]
async fn b099_no_limit_no_bucket() {
    let (_a, b) = pair();
    b.decrement_read_limit(10);
    assert_eq!(b.read_limit().await.unwrap(), None);
}

/// B-100: replacing the limit keeps the bucket, clipped to the new burst; removing it
/// lifts the suspension at once.
#[tokio::test(start_paused = true)]
async fn b100_replace_keeps_the_bucket_and_remove_lifts_the_suspension() {
    let (a, b) = pair();
    b.set_rate_limit(Some(limit(1000, 1000)));
    b.decrement_read_limit(400);
    b.set_rate_limit(Some(limit(10, 500)));
    assert_eq!(
        b.read_limit().await.unwrap(),
        Some(500),
        "600 clipped to 500"
    );
    b.decrement_read_limit(10_000);
    a.write(vec![1u8; 100]).await.unwrap();
    settle_task(&b).await;
    assert_eq!(b.input_len(), 0, "silenced");
    let started = Instant::now();
    b.set_rate_limit(None);
    expect_within(b.readable(100)).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(b.read_limit().await.unwrap(), None);
}

/// B-101: a group's members share each tick evenly; the minimum share defaults to 64,
/// clamped to the rates.
#[tokio::test(start_paused = true)]
async fn b101_a_group_shares_its_rate_and_clamps_the_min_share() {
    let group = RateLimitGroup::new(limit(1000, 1000));
    assert_eq!(group.min_share(), 64);
    let small = RateLimitGroup::new(limit(10, 10));
    assert_eq!(small.min_share(), 10, "clamped to the rate");
    small.set_min_share(0);
    assert_eq!(small.min_share(), 10);

    let (a1, b1) = pair();
    let (a2, b2) = pair();
    group.add(&b1);
    group.add(&b2);
    settle_task(&b1).await;
    settle_task(&b2).await;
    assert_eq!(group.members(), 2);
    let started = Instant::now();
    a1.write(vec![1u8; 2000]).await.unwrap();
    a2.write(vec![2u8; 2000]).await.unwrap();
    // 500 each per tick, the first at once: 2000 each after 3 ticks.
    expect_within(b1.readable(2000)).await;
    expect_within(b2.readable(2000)).await;
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(group.totals(), (4000, 0));
    group.reset_totals();
    assert_eq!(group.totals(), (0, 0));
}

/// B-102: a bufferevent is in one group at most; removing it lifts the group's hold.
#[tokio::test(start_paused = true)]
async fn b102_one_group_at_a_time_and_remove_lifts_the_hold() {
    let first = RateLimitGroup::new(limit(100, 100));
    let second = RateLimitGroup::new(limit(100, 100));
    let (a, b) = pair();
    first.add(&b);
    first.add(&b);
    settle_task(&b).await;
    assert_eq!(first.members(), 1, "adding twice is once");
    second.add(&b);
    settle_task(&b).await;
    assert_eq!((first.members(), second.members()), (0, 1), "moved");
    second.decrement_read_limit(10_000);
    a.write(vec![1u8; 50]).await.unwrap();
    settle_task(&b).await;
    assert_eq!(b.input_len(), 0, "held by the group");
    second.remove(&b);
    expect_within(b.readable(50)).await;
    assert_eq!(second.members(), 0);
}

/// Dropping the last handle of a group with members does not panic (libevent
/// asserts): the members leave it.
#[tokio::test(start_paused = true)]
async fn dropping_a_group_releases_its_members() {
    let group = RateLimitGroup::new(limit(10, 10));
    let (a, b) = pair();
    group.add(&b);
    a.write(vec![1u8; 1000]).await.unwrap();
    settle_task(&b).await;
    assert!(b.input_len() < 1000);
    drop(group);
    let started = Instant::now();
    expect_within(b.readable(1000)).await;
    assert!(started.elapsed() <= TICK, "{:?}", started.elapsed());
}

/// Fairness: 30 members behind one group cap, each as greedy as it can be; over a few
/// seconds no member gets less than half or more than twice the mean, and the group
/// total keeps to its rate.
#[tokio::test(start_paused = true)]
async fn thirty_members_share_fairly() {
    let group = RateLimitGroup::new(limit(30_000, 30_000));
    let mut pairs = Vec::new();
    for _ in 0..30 {
        let (a, b) = pair();
        group.add(&b);
        a.write(vec![0u8; 1 << 20]).await.unwrap();
        pairs.push((a, b));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got: Vec<usize> = pairs.iter().map(|(_, b)| b.input_len()).collect();
    let total: usize = got.iter().sum();
    let mean = total as f64 / got.len() as f64;
    for (i, &n) in got.iter().enumerate() {
        assert!(
            n as f64 >= mean / 2.0 && n as f64 <= mean * 2.0,
            "member {i} got {n}, mean {mean}: {got:?}"
        );
    }
    // 31 ticks (the first at once) of 30,000 at most.
    assert!(total <= 31 * 30_000, "{total}");
    assert!(total >= 29 * 30_000, "{total}");
}

/// B-103: stream bufferevents (sockets among them) apply their limits. Over an
/// in-memory stream, which takes the path a socket does: with the clock paused, a
/// socket's data can arrive after the clock has jumped to the next tick, and the
/// figure would not be exact.
#[tokio::test(start_paused = true)]
async fn b103_a_stream_bufferevent_applies_its_limit() {
    let (ours, mut peer) = tokio::io::duplex(1 << 20);
    let bev = BufferEvent::builder()
        .rate_limit(limit(10_000, 10_000))
        .stream(ours);
    bev.write_now(pattern(50_000)).unwrap();
    let started = Instant::now();
    let mut got = vec![0; 50_000];
    expect_within(peer.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, pattern(50_000));
    assert_eq!(started.elapsed(), Duration::from_millis(400));
}

/// A configuration changed mid-transfer applies from the next tick, on the same tick
/// boundaries.
#[tokio::test(start_paused = true)]
async fn changing_the_configuration_mid_transfer() {
    let (a, b) = pair();
    b.set_rate_limit(Some(limit(100, 100)));
    a.write(vec![3u8; 1000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(b.input_len(), 400, "100 at once, then 100 per tick");
    b.set_rate_limit(Some(limit(300, 300)));
    // 300 more at 400 ms and at 500 ms.
    assert_eq!(time_to_read(&b, 1000).await, Duration::from_millis(150));
}

/// Readers of `n` pairs, set up (limits, groups) before any data flows, then each fed
/// `each` bytes at once.
async fn fed_readers(
    n: usize,
    each: usize,
    setup: impl Fn(&BufferEvent<Pair>),
) -> Vec<BufferEvent<Pair>> {
    let pairs: Vec<_> = (0..n).map(|_| pair()).collect();
    for (_, b) in &pairs {
        setup(b);
    }
    for (_, b) in &pairs {
        settle_task(b).await;
    }
    let mut readers = Vec::new();
    for (a, b) in pairs {
        a.write_now(vec![0u8; each]).unwrap();
        readers.push(b);
        std::mem::forget(a); // the writers live as long as the test's runtime
    }
    readers
}

/// test-ratelim with both caps: each connection's own, and the group's; the smaller
/// decides.
#[tokio::test(start_paused = true)]
async fn a_per_connection_cap_and_a_group_cap_together() {
    let group = RateLimitGroup::new(limit(1000, 1000));
    // Own cap 200 per tick; the group's even share would be 1000 / 4 = 250.
    let readers = fed_readers(4, 100_000, |b| {
        b.set_rate_limit(Some(limit(200, 200)));
        group.add(b);
    })
    .await;
    tokio::time::sleep(Duration::from_millis(950)).await;
    for b in &readers {
        assert_eq!(b.input_len(), 2000, "200 a tick, 10 ticks");
    }
    let (a, b) = pair();
    b.set_rate_limit(Some(limit(1000, 1000)));
    group.add(&b);
    group.set_config(limit(400, 400));
    settle_task(&b).await;
    a.write(vec![0u8; 100_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Now the group decides: 400 a tick over 5 members, 80 each, give or take the
    // tick in which the configuration changed.
    let got = b.input_len();
    assert!((700..=1000).contains(&got), "{got}");
}

/// The minimum share: with more members than the rate spreads over, each still moves
/// at least the minimum share when it runs, and the group keeps its rate on average.
#[tokio::test(start_paused = true)]
async fn the_min_share_holds_and_the_group_keeps_its_rate() {
    let group = RateLimitGroup::new(limit(1000, 1000));
    group.set_min_share(500);
    let readers = fed_readers(10, 100_000, |b| group.add(b)).await;
    tokio::time::sleep(Duration::from_millis(1950)).await;
    let got: Vec<usize> = readers.iter().map(|b| b.input_len()).collect();
    assert!(got.iter().all(|&n| n % 500 == 0 && n > 0), "{got:?}");
    let total: usize = got.iter().sum();
    // 20 ticks of 1000, give or take the one tick of overdraft the shares allow.
    assert!((19_000..=25_000).contains(&total), "{total}");
    assert_eq!(
        got.iter().min(),
        got.iter().max(),
        "the same for all: {got:?}"
    );
}

/// Group drain (test-ratelim's `-G`): other traffic taking tokens from the group every
/// tick lowers what the members get, evenly.
#[tokio::test(start_paused = true)]
async fn a_group_drained_every_tick_gives_its_members_less() {
    let group = RateLimitGroup::new(limit(1000, 1000));
    let readers = fed_readers(4, 100_000, |b| group.add(b)).await;
    let drain = {
        let group = group.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(TICK);
            loop {
                ticks.tick().await;
                group.decrement_read_limit(400);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(2000)).await;
    drain.abort();
    let got: Vec<usize> = readers.iter().map(|b| b.input_len()).collect();
    let total: usize = got.iter().sum();
    // 600 a tick left for the members, over 20 ticks, give or take a tick.
    assert!((11_000..=14_000).contains(&total), "{total}: {got:?}");
    assert_eq!(got.iter().min(), got.iter().max(), "{got:?}");
    assert_eq!(group.totals().0 as usize, total);
}

/// A filter over a rate-limited bufferevent is limited through it (B-93, B-103).
#[tokio::test(start_paused = true)]
async fn a_filter_is_limited_through_the_bufferevent_beneath() {
    use tokio_bufferevent::bufferevent::PassThrough;
    let (a, b) = pair();
    a.set_rate_limit(Some(limit(100, 100)));
    let filter = BufferEvent::filter(a, PassThrough, PassThrough);
    filter.write(vec![5u8; 500]).await.unwrap();
    assert_eq!(time_to_read(&b, 500).await, Duration::from_millis(400));
}

/// Members on two runtimes (two threads) share one group: together they keep its rate,
/// and split it evenly.
#[test]
fn members_on_different_runtimes_share_a_group() {
    let group = RateLimitGroup::new(limit(20_000, 20_000));
    let run = |group: RateLimitGroup| {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (a, b) = pair();
                group.add(&b);
                a.write(vec![0u8; 1 << 22]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1000)).await;
                b.input_len()
            })
        })
    };
    let first = run(group.clone());
    let second = run(group.clone());
    let (x, y) = (first.join().unwrap(), second.join().unwrap());
    // About 10 ticks of 20,000 between them: generous bounds, real time on a busy
    // machine.
    let total = x + y;
    assert!((100_000..=260_000).contains(&total), "{x} + {y}");
    assert!(x * 2 >= y && y * 2 >= x, "{x} vs {y}");
}

/// A tick of another length counts afresh (found in review: the old tick count, read
/// in the new unit, stopped refills for hours).
#[tokio::test(start_paused = true)]
async fn a_new_tick_length_counts_ticks_afresh() {
    let (a, b) = pair();
    b.set_rate_limit(Some(limit(100, 100)));
    tokio::time::sleep(Duration::from_secs(60)).await; // 600 ticks of 100 ms
    b.set_rate_limit(Some(
        RateLimit::new(100, 100, 100, 100, Some(Duration::from_secs(1))).unwrap(),
    ));
    b.decrement_read_limit(100);
    a.write(vec![1u8; 100]).await.unwrap();
    let took = time_to_read(&b, 100).await;
    assert!(took <= Duration::from_secs(2), "{took:?}");
}

/// With nothing to send, an empty write bucket does not hold a close: the shutdown
/// spends no tokens.
#[tokio::test(start_paused = true)]
async fn an_empty_write_bucket_does_not_hold_a_close() {
    let (ours, _peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .rate_limit(limit(10, 10))
        .tcp(ours)
        .unwrap();
    bev.decrement_write_limit(1_000_000);
    let started = Instant::now();
    let closed = expect_within(bev.close()).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(closed.error.is_none(), "{:?}", closed.error);
}

/// B-95, B-98: a bucket refills before a budget is taken from it, as libevent
/// refills while it computes one: after a long idle spell a bucket that was partly
/// used gives one burst at once, not what was left plus a burst. A reader over a
/// stream, and either end of a pair.
#[tokio::test(start_paused = true)]
async fn an_idle_bucket_gives_one_burst_not_the_rest_plus_a_burst() {
    let (near, mut far) = tokio::io::duplex(1 << 20);
    let reader = BufferEvent::builder()
        .rate_limit(limit(1000, 1000))
        .enable(Direction::READ)
        .stream(near);
    far.write_all(&[1u8; 400]).await.unwrap();
    expect_within(reader.readable(400)).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    far.write_all(&[2u8; 10_000]).await.unwrap();
    settle_task(&reader).await;
    assert_eq!(reader.input_len(), 1400, "400, then one burst at once");

    // The writer limited, then the reader: a pair's transfer may run before the
    // limited element's own pass.
    for writer_limited in [true, false] {
        let (a, b) = pair();
        let limited = if writer_limited { &a } else { &b };
        limited.set_rate_limit(Some(limit(1000, 1000)));
        a.write(vec![1u8; 400]).await.unwrap();
        expect_within(b.readable(400)).await;
        tokio::time::advance(Duration::from_secs(5)).await;
        a.write(vec![2u8; 10_000]).await.unwrap();
        settle_task(&a).await;
        assert_eq!(
            b.input_len(),
            1400,
            "400, then one burst at once (writer limited: {writer_limited})"
        );
    }
}

/// B-101: a bufferevent that joins a group long after the group's last tick moves its
/// share of the tick it joins in, not the share of a stale tick and then again.
#[tokio::test(start_paused = true)]
async fn a_member_joining_a_quiet_group_gets_one_share_at_once() {
    let group = RateLimitGroup::new(limit(1000, 1000));
    tokio::time::advance(Duration::from_secs(1)).await;
    let (near, mut far) = tokio::io::duplex(1 << 20);
    let reader = BufferEvent::builder().stream(near);
    far.write_all(&[3u8; 10_000]).await.unwrap();
    // Both reach the task together: it reads in the pass that applies the join.
    group.add(&reader);
    reader.enable(Direction::READ);
    settle_task(&reader).await;
    assert_eq!(reader.input_len(), 1000, "one share at once");
}

/// B-101: the group's buckets are current when read or decremented, as libevent's
/// tick timer keeps them, though no member has run to refill them.
#[tokio::test(start_paused = true)]
async fn a_group_without_active_members_shows_its_refilled_buckets() {
    let group = RateLimitGroup::new(limit(1000, 1000));
    group.decrement_read_limit(1000);
    assert_eq!(group.read_limit(), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(group.read_limit(), 1000, "refilled to the burst");
    group.decrement_write_limit(1500);
    tokio::time::advance(Duration::from_secs(1)).await;
    group.decrement_write_limit(600);
    assert_eq!(group.write_limit(), 400, "refilled before the decrement");
}

/// B-101: a configuration that lowers the rates clamps the minimum share, and one that
/// raises them again restores the share as set (libevent's `configured_min_share`).
#[test]
fn the_min_share_as_set_outlives_a_lower_configuration() {
    let group = RateLimitGroup::new(limit(1000, 1000));
    group.set_min_share(500);
    group.set_config(limit(100, 100));
    assert_eq!(group.min_share(), 100);
    group.set_config(limit(1000, 1000));
    assert_eq!(group.min_share(), 500);
}
