//! Rate limiting (libevent's `bufferevent_ratelim`, B-94..B-103): per-bufferevent token
//! buckets and groups. Arithmetic on paused time, so every figure is exact; the
//! engine over real loopback sockets where it matters.

mod common;

use std::time::Duration;

use tokio::io::AsyncReadExt;
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

/// B-103: socket bufferevents apply their limits; over a real loopback socket.
#[tokio::test(start_paused = true)]
async fn b103_a_socket_bufferevent_applies_its_limit() {
    let (ours, mut peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .rate_limit(limit(10_000, 10_000))
        .tcp(ours)
        .unwrap();
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
