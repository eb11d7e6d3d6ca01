//! Token buckets (libevent's `bufferevent_ratelim`): a validated configuration, one
//! bufferevent's buckets, and the state a group of bufferevents shares. Arithmetic on
//! the `now` values the engine passes in; no clock is read here.
//!
//! Ticks are counted from when a limit was set (or a group made), on the monotonic
//! clock the engine uses (Tokio's, so paused time makes every test exact), where
//! libevent aligns them to the wall clock.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bufferevent::events::Direction;

/// The largest rate or burst (libevent's `EV_RATE_LIMIT_MAX`): buckets are signed
/// 64-bit counts that may go negative.
pub const RATE_LIMIT_MAX: u64 = i64::MAX as u64 / 2;

/// A token-bucket configuration (`ev_token_bucket_cfg`): how many bytes each
/// direction may move per tick, and how many may accumulate.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tokio_bufferevent::bufferevent::RateLimit;
///
/// // 20 kB/s each way, bursts of 40 kB, refilled every 100 ms (2 kB a tick).
/// let cfg = RateLimit::new(2_000, 4_000, 2_000, 4_000, Some(Duration::from_millis(100)))?;
/// assert_eq!(cfg.read_rate(), 2_000);
/// assert!(RateLimit::new(0, 10, 1, 1, None).is_err());
/// # Ok::<(), tokio_bufferevent::bufferevent::RateLimitError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(alias = "ev_token_bucket_cfg")]
pub struct RateLimit {
    read_rate: u64,
    read_burst: u64,
    write_rate: u64,
    write_burst: u64,
    tick_ms: u32,
}

/// Why a [`RateLimit`] was refused (libevent's `ev_token_bucket_cfg_new` returns
/// `NULL` for all of these).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitError {
    /// A rate of 0: the direction could never move a byte.
    ZeroRate {
        /// The direction whose rate is 0.
        direction: Direction,
    },
    /// A rate above its burst: the bucket could never hold one tick's worth.
    RateAboveBurst {
        /// The direction.
        direction: Direction,
        /// Its rate.
        rate: u64,
        /// Its burst.
        burst: u64,
    },
    /// A rate or burst above [`RATE_LIMIT_MAX`].
    TooLarge {
        /// The direction.
        direction: Direction,
        /// The value.
        value: u64,
    },
    /// A tick under one millisecond (ticks count whole milliseconds) or over
    /// `u32::MAX` milliseconds.
    BadTick(Duration),
}

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |d: &Direction| {
            if *d == Direction::READ {
                "read"
            } else {
                "write"
            }
        };
        match self {
            Self::ZeroRate { direction } => write!(f, "the {} rate is 0", name(direction)),
            Self::RateAboveBurst {
                direction,
                rate,
                burst,
            } => write!(
                f,
                "the {} rate {rate} is above its burst {burst}",
                name(direction)
            ),
            Self::TooLarge { direction, value } => write!(
                f,
                "the {} value {value} is above the limit {RATE_LIMIT_MAX}",
                name(direction)
            ),
            Self::BadTick(tick) => write!(
                f,
                "the tick {tick:?} is not between 1 ms and {} ms",
                u32::MAX
            ),
        }
    }
}

impl Error for RateLimitError {}

impl RateLimit {
    /// A configuration (`ev_token_bucket_cfg_new`): `read_rate` bytes may be read per
    /// tick and up to `read_burst` accumulate, and the same for writing. `tick` is
    /// counted in whole milliseconds (what is below one is dropped); `None` means one
    /// second.
    ///
    /// # Errors
    ///
    /// The first problem found, reading before writing:
    /// [`RateLimitError::ZeroRate`] if a rate is 0; [`RateLimitError::TooLarge`] if a
    /// rate or burst is above [`RATE_LIMIT_MAX`]; [`RateLimitError::RateAboveBurst`]
    /// if a rate is above its burst; then [`RateLimitError::BadTick`] if `tick` is
    /// under 1 ms or over `u32::MAX` ms.
    #[doc(alias = "ev_token_bucket_cfg_new")]
    pub fn new(
        read_rate: u64,
        read_burst: u64,
        write_rate: u64,
        write_burst: u64,
        tick: Option<Duration>,
    ) -> Result<Self, RateLimitError> {
        for (direction, rate, burst) in [
            (Direction::READ, read_rate, read_burst),
            (Direction::WRITE, write_rate, write_burst),
        ] {
            if rate == 0 {
                return Err(RateLimitError::ZeroRate { direction });
            }
            for value in [rate, burst] {
                if value > RATE_LIMIT_MAX {
                    return Err(RateLimitError::TooLarge { direction, value });
                }
            }
            if rate > burst {
                return Err(RateLimitError::RateAboveBurst {
                    direction,
                    rate,
                    burst,
                });
            }
        }
        let tick = tick.unwrap_or(Duration::from_secs(1));
        let tick_ms = u32::try_from(tick.as_millis())
            .ok()
            .filter(|&ms| ms >= 1)
            .ok_or(RateLimitError::BadTick(tick))?;
        Ok(Self {
            read_rate,
            read_burst,
            write_rate,
            write_burst,
            tick_ms,
        })
    }

    /// Bytes that may be read per tick.
    pub fn read_rate(&self) -> u64 {
        self.read_rate
    }

    /// The most read tokens that accumulate.
    pub fn read_burst(&self) -> u64 {
        self.read_burst
    }

    /// Bytes that may be written per tick.
    pub fn write_rate(&self) -> u64 {
        self.write_rate
    }

    /// The most write tokens that accumulate.
    pub fn write_burst(&self) -> u64 {
        self.write_burst
    }

    /// The tick, in whole milliseconds.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms.into())
    }

    fn rate(&self, read: bool) -> i64 {
        (if read {
            self.read_rate
        } else {
            self.write_rate
        }) as i64
    }

    fn burst(&self, read: bool) -> i64 {
        (if read {
            self.read_burst
        } else {
            self.write_burst
        }) as i64
    }

    /// The tick `now` falls in, counting from `origin`.
    fn tick_of(&self, origin: Instant, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(origin).as_millis();
        u64::try_from(ms / u128::from(self.tick_ms)).unwrap_or(u64::MAX)
    }

    /// When tick `n` starts.
    fn tick_start(&self, origin: Instant, n: u64) -> Instant {
        let ms = u64::from(self.tick_ms).saturating_mul(n);
        origin + Duration::from_millis(ms)
    }
}

/// Adds `ticks` ticks' worth of `rate` to `bucket`, capped at `burst`. A
/// bucket above its burst (after a smaller burst was configured) is not raised.
fn refilled(bucket: i64, rate: i64, burst: i64, ticks: u64) -> i64 {
    if bucket >= burst {
        return bucket;
    }
    let gain = rate.saturating_mul(i64::try_from(ticks).unwrap_or(i64::MAX));
    bucket.saturating_add(gain).min(burst)
}

/// One bufferevent's own buckets.
#[derive(Debug)]
pub(crate) struct Buckets {
    cfg: RateLimit,
    read: i64,
    write: i64,
    /// When tick 0 began: the first refill after the limit was set.
    origin: Option<Instant>,
    tick: u64,
}

impl Buckets {
    /// Buckets start at the rate, not the burst; ticks count from the first
    /// refill, in the pass that set the limit.
    pub(crate) fn new(cfg: RateLimit) -> Self {
        Self {
            cfg,
            read: cfg.rate(true),
            write: cfg.rate(false),
            origin: None,
            tick: 0,
        }
    }

    /// Another configuration: the buckets stay, clipped to the new bursts.
    pub(crate) fn reconfigure(&mut self, cfg: RateLimit) {
        if cfg == self.cfg {
            return;
        }
        if cfg.tick_ms != self.cfg.tick_ms {
            // Ticks of another length: count them afresh from the next refill.
            self.origin = None;
            self.tick = 0;
        }
        self.cfg = cfg;
        self.read = self.read.min(cfg.burst(true));
        self.write = self.write.min(cfg.burst(false));
    }

    pub(crate) fn refill(&mut self, now: Instant) {
        let origin = *self.origin.get_or_insert(now);
        let tick = self.cfg.tick_of(origin, now);
        if tick > self.tick {
            let ticks = tick - self.tick;
            self.read = refilled(self.read, self.cfg.rate(true), self.cfg.burst(true), ticks);
            self.write = refilled(
                self.write,
                self.cfg.rate(false),
                self.cfg.burst(false),
                ticks,
            );
            self.tick = tick;
        }
    }

    /// When the next tick begins (once ticks are counting).
    pub(crate) fn next_tick(&self) -> Option<Instant> {
        Some(self.cfg.tick_start(self.origin?, self.tick + 1))
    }

    pub(crate) fn get(&self, read: bool) -> i64 {
        if read { self.read } else { self.write }
    }

    /// Takes `n` tokens (negative `n` gives them back).
    pub(crate) fn charge(&mut self, read: bool, n: i64) {
        let bucket = if read {
            &mut self.read
        } else {
            &mut self.write
        };
        *bucket = bucket.saturating_sub(n);
    }

    pub(crate) fn cfg(&self) -> RateLimit {
        self.cfg
    }
}

/// The default of a group's minimum share.
pub(crate) const DEFAULT_MIN_SHARE: u64 = 64;

/// What the members of a group share: the group's buckets, its configuration, its
/// members' count and totals. Members on any thread or runtime update it with atomics;
/// only a refill takes the lock, once per tick.
#[derive(Debug)]
pub(crate) struct GroupShared {
    state: Mutex<GroupConfig>,
    read: AtomicI64,
    write: AtomicI64,
    /// The last tick refilled.
    tick: AtomicU64,
    /// What each member may move in the current tick, per direction: fixed when the
    /// tick begins (or the membership changes), so the order in which members run
    /// does not decide who gets what.
    share_read: AtomicI64,
    share_write: AtomicI64,
    members: AtomicUsize,
    min_share: AtomicU64,
    total_read: AtomicU64,
    total_written: AtomicU64,
    /// The last handle of the group is gone: its members leave it.
    dissolved: AtomicBool,
    /// When the tick after `tick` begins, in nanoseconds since `base`: until then a
    /// refill has nothing to do and takes no lock (members refill at every pass).
    next_tick_ns: AtomicU64,
    base: Instant,
}

#[derive(Debug)]
struct GroupConfig {
    cfg: RateLimit,
    origin: Instant,
    /// The minimum share as set (`min_share` holds it clamped to the rates): each
    /// new configuration clamps it afresh, as libevent's `configured_min_share`.
    configured_min_share: u64,
}

impl GroupShared {
    /// A group starting at `now`, with its buckets at the rate.
    pub(crate) fn new(cfg: RateLimit, now: Instant) -> Self {
        Self {
            state: Mutex::new(GroupConfig {
                cfg,
                origin: now,
                configured_min_share: DEFAULT_MIN_SHARE,
            }),
            read: AtomicI64::new(cfg.rate(true)),
            write: AtomicI64::new(cfg.rate(false)),
            tick: AtomicU64::new(0),
            share_read: AtomicI64::new(0),
            share_write: AtomicI64::new(0),
            members: AtomicUsize::new(0),
            min_share: AtomicU64::new(clamped_share(DEFAULT_MIN_SHARE, cfg)),
            total_read: AtomicU64::new(0),
            total_written: AtomicU64::new(0),
            dissolved: AtomicBool::new(false),
            next_tick_ns: AtomicU64::new(0),
            base: now,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GroupConfig> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn cfg(&self) -> RateLimit {
        self.state().cfg
    }

    /// Another configuration: the buckets stay, clipped to the new bursts, and the
    /// minimum share as set is clamped to the new rates.
    pub(crate) fn set_cfg(&self, cfg: RateLimit, now: Instant) {
        let mut state = self.state();
        if cfg.tick_ms != state.cfg.tick_ms {
            // Ticks of another length: count them afresh from now.
            state.origin = now;
            self.tick.store(0, Ordering::Release);
            self.next_tick_ns.store(0, Ordering::Release);
        }
        state.cfg = cfg;
        self.read.fetch_min(cfg.burst(true), Ordering::AcqRel);
        self.write.fetch_min(cfg.burst(false), Ordering::AcqRel);
        self.min_share.store(
            clamped_share(state.configured_min_share, cfg),
            Ordering::Release,
        );
        self.reshare(&cfg);
    }

    /// The minimum share, clamped to the rates; 0 means the default.
    pub(crate) fn set_min_share(&self, share: u64) {
        let mut state = self.state();
        let share = if share == 0 { DEFAULT_MIN_SHARE } else { share };
        state.configured_min_share = share;
        self.min_share
            .store(clamped_share(share, state.cfg), Ordering::Release);
        self.reshare(&state.cfg);
    }

    pub(crate) fn min_share(&self) -> u64 {
        self.min_share.load(Ordering::Acquire)
    }

    /// Brings the buckets up to `now`'s tick; the first member to see a new tick
    /// does it, once. Returns the current tick.
    pub(crate) fn refill(&self, now: Instant) -> u64 {
        let since_base = |t: Instant| {
            u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
        };
        if since_base(now) < self.next_tick_ns.load(Ordering::Acquire) {
            return self.tick.load(Ordering::Acquire);
        }
        let state = self.state();
        let tick = state.cfg.tick_of(state.origin, now);
        let last = self.tick.load(Ordering::Acquire);
        if tick > last {
            let ticks = tick - last;
            for (bucket, read) in [(&self.read, true), (&self.write, false)] {
                let rate = state.cfg.rate(read);
                let burst = state.cfg.burst(read);
                // Members only take tokens concurrently; the lock orders refills.
                let mut current = bucket.load(Ordering::Acquire);
                loop {
                    let next = refilled(current, rate, burst, ticks);
                    match bucket.compare_exchange(
                        current,
                        next,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break,
                        Err(seen) => current = seen,
                    }
                }
            }
            self.tick.store(tick, Ordering::Release);
            self.reshare(&state.cfg);
        }
        // Another member may have refilled into a later tick than `now` says.
        let current = tick.max(last);
        let next = state
            .cfg
            .tick_start(state.origin, current.saturating_add(1));
        self.next_tick_ns.store(since_base(next), Ordering::Release);
        current
    }

    /// Fixes each member's share of the tick: the bucket split evenly, never less
    /// than the minimum share, nothing while the bucket is empty. A share is
    /// not capped by what is left in the bucket as members take theirs: a bucket
    /// driven below 0 silences the whole group for the ticks its refill takes, so the
    /// group keeps its rate on average and every member gets the same.
    fn reshare(&self, cfg: &RateLimit) {
        let members = self.members().max(1) as i64;
        let min_share = self.min_share() as i64;
        for (bucket, share, read) in [
            (&self.read, &self.share_read, true),
            (&self.write, &self.share_write, false),
        ] {
            let tokens = bucket.load(Ordering::Acquire);
            let even = if tokens > 0 {
                tokens / members + i64::from(tokens % members != 0)
            } else {
                0
            };
            let value = if tokens > 0 {
                even.max(min_share).min(cfg.burst(read))
            } else {
                0
            };
            share.store(value, Ordering::Release);
        }
    }

    /// When the tick after the group's current one begins.
    pub(crate) fn next_tick(&self) -> Instant {
        let state = self.state();
        let tick = self.tick.load(Ordering::Acquire);
        state.cfg.tick_start(state.origin, tick + 1)
    }

    pub(crate) fn get(&self, read: bool) -> i64 {
        if read { &self.read } else { &self.write }.load(Ordering::Acquire)
    }

    /// Takes `n` tokens (negative `n` gives them back). Totals count what members
    /// moved, not what the user took.
    pub(crate) fn charge(&self, read: bool, n: i64) {
        let bucket = if read { &self.read } else { &self.write };
        // Saturating, as `decrement`: a bucket the user took to `i64::MIN` must not
        // wrap round to a huge allowance.
        let _ = bucket.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
            Some(b.saturating_sub(n))
        });
    }

    /// The user took (or gave back) tokens: a bucket taken to 0 or below
    /// silences every member at once; one raised from there above 0 lets them go on.
    pub(crate) fn decrement(&self, read: bool, n: i64) {
        let bucket = if read { &self.read } else { &self.write };
        let update = bucket.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
            Some(b.saturating_sub(n))
        });
        let before = update.unwrap_or_else(|b| b);
        let after = before.saturating_sub(n);
        if (before > 0) != (after > 0) {
            self.membership_changed();
        }
    }

    fn count(&self, read: bool, n: usize) {
        let total = if read {
            &self.total_read
        } else {
            &self.total_written
        };
        total.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes read and written by members since the last reset.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.total_read.load(Ordering::Relaxed),
            self.total_written.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn reset_totals(&self) {
        self.total_read.store(0, Ordering::Relaxed);
        self.total_written.store(0, Ordering::Relaxed);
    }

    pub(crate) fn members(&self) -> usize {
        self.members.load(Ordering::Acquire)
    }

    /// The last handle is gone: members leave at their next look.
    pub(crate) fn dissolve(&self) {
        self.dissolved.store(true, Ordering::Release);
    }

    fn dissolved(&self) -> bool {
        self.dissolved.load(Ordering::Acquire)
    }

    /// Each member's share of the current tick.
    fn quota(&self, read: bool) -> i64 {
        if read {
            &self.share_read
        } else {
            &self.share_write
        }
        .load(Ordering::Acquire)
    }

    /// The membership changed: shares are fixed again from what the buckets hold.
    fn membership_changed(&self) {
        let state = self.state();
        self.reshare(&state.cfg);
    }
}

fn clamped_share(share: u64, cfg: RateLimit) -> u64 {
    share.min(cfg.read_rate).min(cfg.write_rate)
}

/// A bufferevent's membership of a group.
#[derive(Debug)]
pub(crate) struct Member {
    group: Arc<GroupShared>,
    /// The group tick this member last took part in, and what it took in it.
    tick: u64,
    used_read: i64,
    used_write: i64,
}

impl Member {
    /// Joins `group` at `now`: the group's buckets are brought up to now first, so
    /// that the member takes part in the current tick, not in a stale one that its
    /// next refill would replace (which would give it two shares at once).
    pub(crate) fn join(group: Arc<GroupShared>, now: Instant) -> Self {
        let tick = group.refill(now);
        group.members.fetch_add(1, Ordering::AcqRel);
        group.membership_changed();
        Self {
            group,
            tick,
            used_read: 0,
            used_write: 0,
        }
    }

    pub(crate) fn group(&self) -> &Arc<GroupShared> {
        &self.group
    }

    /// What this member may move now in one direction: its share of the tick, less
    /// what it moved in it.
    fn allowance(&self, read: bool) -> i64 {
        if self.group.dissolved() {
            return i64::MAX;
        }
        let used = if read {
            self.used_read
        } else {
            self.used_write
        };
        // Not capped by what is left in the bucket: see `GroupShared::reshare`.
        (self.group.quota(read) - used).max(0)
    }

    fn charge(&mut self, read: bool, n: usize) {
        if self.group.dissolved() {
            return;
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.group.charge(read, n);
        self.group.count(read, n as usize);
        let used = if read {
            &mut self.used_read
        } else {
            &mut self.used_write
        };
        *used = used.saturating_add(n);
    }

    /// Catches up with the group's tick; whether a new one began.
    fn refill(&mut self, now: Instant) -> bool {
        let tick = self.group.refill(now);
        if tick != self.tick {
            self.tick = tick;
            self.used_read = 0;
            self.used_write = 0;
            true
        } else {
            false
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.group.members.fetch_sub(1, Ordering::AcqRel);
        self.group.membership_changed();
    }
}

/// A bufferevent's rate limiting: its own buckets, its group, or both.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    pub(crate) own: Option<Buckets>,
    pub(crate) member: Option<Member>,
}

impl RateLimiter {
    pub(crate) fn is_empty(&self) -> bool {
        self.own.is_none() && self.member.is_none()
    }

    /// What may move now in one direction: the own bucket (which replaces
    /// `max_single`) and the group share, whichever is smaller; `None` when neither
    /// limits it. Never negative.
    pub(crate) fn allowance(&self, read: bool) -> Option<usize> {
        let own = self.own.as_ref().map(|b| b.get(read));
        let group = self
            .member
            .as_ref()
            .map(|m| m.allowance(read))
            .filter(|&a| a != i64::MAX);
        let limit = match (own, group) {
            (None, None) => return None,
            (Some(a), None) | (None, Some(a)) => a,
            (Some(a), Some(b)) => a.min(b),
        };
        Some(usize::try_from(limit.max(0)).unwrap_or(usize::MAX))
    }

    /// Bytes moved: taken from every bucket that applies.
    pub(crate) fn charge(&mut self, read: bool, n: usize) {
        let tokens = i64::try_from(n).unwrap_or(i64::MAX);
        if let Some(own) = self.own.as_mut() {
            own.charge(read, tokens);
        }
        if let Some(member) = self.member.as_mut() {
            member.charge(read, n);
        }
    }

    /// Refills to `now`; whether anything was refilled.
    pub(crate) fn refill(&mut self, now: Instant) -> bool {
        let mut refilled = false;
        if let Some(own) = self.own.as_mut() {
            let before = own.tick;
            own.refill(now);
            refilled |= own.tick != before;
        }
        if let Some(member) = self.member.as_mut() {
            refilled |= member.refill(now);
        }
        refilled
    }

    /// When the next refill may lift a suspension.
    pub(crate) fn next_refill(&self) -> Option<Instant> {
        let own = self.own.as_ref().and_then(Buckets::next_tick);
        // A dissolved group's tick too: the last group handle may go between a
        // refill's look and this one, and that tick is when the member leaves it
        // (`drop_dissolved`) and resumes.
        let group = self.member.as_ref().map(|m| m.group.next_tick());
        match (own, group) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Leaves a group that was dissolved.
    pub(crate) fn drop_dissolved(&mut self) {
        if self.member.as_ref().is_some_and(|m| m.group.dissolved()) {
            self.member = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: u64, burst: u64, tick_ms: u64) -> RateLimit {
        RateLimit::new(
            rate,
            burst,
            rate,
            burst,
            Some(Duration::from_millis(tick_ms)),
        )
        .unwrap()
    }

    #[test]
    fn b094_invalid_configurations_say_why() {
        let ms = Some(Duration::from_millis(10));
        assert_eq!(
            RateLimit::new(0, 1, 1, 1, ms),
            Err(RateLimitError::ZeroRate {
                direction: Direction::READ
            })
        );
        assert_eq!(
            RateLimit::new(1, 1, 5, 4, ms),
            Err(RateLimitError::RateAboveBurst {
                direction: Direction::WRITE,
                rate: 5,
                burst: 4
            })
        );
        assert!(matches!(
            RateLimit::new(1, u64::MAX, 1, 1, ms),
            Err(RateLimitError::TooLarge { .. })
        ));
        assert_eq!(
            RateLimit::new(1, 1, 1, 1, Some(Duration::from_micros(999))),
            Err(RateLimitError::BadTick(Duration::from_micros(999)))
        );
        let c = RateLimit::new(1, 2, 3, 4, Some(Duration::from_micros(2500))).unwrap();
        assert_eq!(
            c.tick(),
            Duration::from_millis(2),
            "sub-millisecond part dropped"
        );
        assert_eq!(
            RateLimit::new(1, 1, 1, 1, None).unwrap().tick(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn b095_buckets_start_at_the_rate_and_refill_per_tick_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = Buckets::new(cfg(10, 25, 100));
        assert_eq!(b.get(true), 10, "the rate, not the burst");
        b.refill(t0);
        b.charge(true, 10);
        b.refill(t0 + Duration::from_millis(99));
        assert_eq!(b.get(true), 0, "no tick yet");
        b.refill(t0 + Duration::from_millis(100));
        assert_eq!(b.get(true), 10);
        b.refill(t0 + Duration::from_millis(550));
        assert_eq!(b.get(true), 25, "capped at the burst");
        assert_eq!(b.next_tick(), Some(t0 + Duration::from_millis(600)));
    }

    #[test]
    fn b100_a_new_configuration_keeps_the_bucket_clipped_to_the_new_burst() {
        let mut b = Buckets::new(cfg(100, 100, 10));
        b.reconfigure(cfg(10, 40, 10));
        assert_eq!(b.get(true), 40);
        b.charge(true, 60);
        b.reconfigure(cfg(10, 50, 10));
        assert_eq!(b.get(true), -20, "a negative bucket stays negative");
    }

    /// A group bucket the user took to the bottom stays there when members move
    /// bytes they were already granted: it does not wrap round to a huge allowance.
    #[test]
    fn a_group_bucket_at_the_bottom_does_not_wrap() {
        let g = GroupShared::new(cfg(100, 100, 10), Instant::now());
        g.decrement(true, i64::MAX);
        g.decrement(true, i64::MAX);
        assert_eq!(g.get(true), i64::MIN);
        g.charge(true, 14);
        assert_eq!(g.get(true), i64::MIN);
    }

    #[test]
    fn b101_the_min_share_is_clamped_to_the_rates() {
        let g = GroupShared::new(cfg(50, 100, 10), Instant::now());
        assert_eq!(g.min_share(), 50, "64 clamped to the rate");
        g.set_cfg(cfg(1000, 1000, 10), Instant::now());
        assert_eq!(g.min_share(), 64, "the default, clamped to the new rates");
        g.set_min_share(500);
        g.set_cfg(cfg(100, 100, 10), Instant::now());
        assert_eq!(g.min_share(), 100);
        g.set_cfg(cfg(1000, 1000, 10), Instant::now());
        assert_eq!(g.min_share(), 500, "as set, not as last clamped");
        g.set_min_share(0);
        assert_eq!(g.min_share(), 64, "0 is the default");
    }

    /// The last group handle may go between a member's refill and its look for the
    /// next deadline: the deadline is still there, so the member wakes, leaves the
    /// group and resumes instead of waiting with no timer.
    #[test]
    fn a_member_of_a_group_dissolved_mid_pass_still_has_a_deadline() {
        let t0 = Instant::now();
        let g = Arc::new(GroupShared::new(cfg(1000, 1000, 100), t0));
        let mut limiter = RateLimiter {
            own: None,
            member: Some(Member::join(Arc::clone(&g), t0)),
        };
        limiter.charge(true, 1000);
        assert_eq!(limiter.allowance(true), Some(0), "suspended by the group");
        limiter.drop_dissolved();
        g.dissolve();
        let next = limiter
            .next_refill()
            .expect("a deadline to leave the group");
        assert!(next > t0);
        limiter.refill(next);
        limiter.drop_dissolved();
        assert!(limiter.is_empty());
        assert_eq!(limiter.allowance(true), None, "no longer limited");
    }

    #[test]
    fn group_members_share_a_tick_evenly() {
        let t0 = Instant::now();
        let g = Arc::new(GroupShared::new(cfg(1000, 1000, 100), t0));
        let mut a = Member::join(Arc::clone(&g), t0);
        let b = Member::join(Arc::clone(&g), t0);
        assert_eq!(a.allowance(true), 500, "the bucket split evenly");
        a.charge(true, 500);
        assert_eq!(a.allowance(true), 0, "its share of this tick is used");
        assert_eq!(b.allowance(true), 500);
        assert_eq!(g.totals(), (500, 0));
        assert!(a.refill(t0 + Duration::from_millis(100)));
        assert_eq!(a.allowance(true), 500, "a new tick");
        a.charge(true, 500);
        drop(b);
        assert_eq!(g.members(), 1);
        assert_eq!(
            a.allowance(true),
            0,
            "its share: all that was left (500), now used"
        );
        g.charge(true, 10_000);
        assert!(a.refill(t0 + Duration::from_millis(200)));
        assert_eq!(a.allowance(true), 0, "a bucket below 0 silences the group");
    }
}
