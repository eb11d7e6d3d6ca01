//! Rate limiting as users see it: a bufferevent's own token buckets (on the handle,
//! the builder and `Context`), and [`RateLimitGroup`], buckets shared by many
//! bufferevents (libevent's `bufferevent_rate_limit_group`). The arithmetic is the
//! core's (`core/ratelim.rs`).

use std::fmt;
use std::sync::Arc;

use super::core::ratelim::{GroupShared, RateLimit};
use super::error::Error;
use super::handle::BufferEvent;

impl<T, S> BufferEvent<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    /// Sets, replaces or removes this bufferevent's own rate limit
    /// (`bufferevent_set_rate_limit`); see [`Context::set_rate_limit`](super::Context::set_rate_limit).
    /// Socket and pair bufferevents apply it; a filter is limited through the
    /// bufferevent beneath it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Direction, RateLimit};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = BufferEvent::pair();
    /// b.enable(Direction::READ);
    /// // 100 bytes per 100 ms each way.
    /// a.set_rate_limit(Some(RateLimit::new(100, 100, 100, 100, Some(Duration::from_millis(100)))?));
    /// a.write(vec![0u8; 1000]).await?;
    /// let started = tokio::time::Instant::now();
    /// b.readable(1000).await;
    /// assert!(started.elapsed() >= Duration::from_millis(900));
    /// # Ok(()) }
    /// ```
    #[doc(alias = "bufferevent_set_rate_limit")]
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.run(move |ctx| ctx.set_rate_limit(limit));
    }

    /// The read bucket (`bufferevent_get_read_limit`): may be negative; `None`
    /// without an own limit.
    ///
    /// # Errors
    ///
    /// Only [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)), if the
    /// bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only looks.
    #[doc(alias = "bufferevent_get_read_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_get_read_limit")]
    pub async fn read_limit(&self) -> Result<Option<i64>, Error> {
        self.with(|ctx| ctx.read_limit()).await
    }

    /// The write bucket (`bufferevent_get_write_limit`), as
    /// [`read_limit`](Self::read_limit).
    ///
    /// # Errors
    ///
    /// Only [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)), if the
    /// bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only looks.
    #[doc(alias = "bufferevent_get_write_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_get_write_limit")]
    pub async fn write_limit(&self) -> Result<Option<i64>, Error> {
        self.with(|ctx| ctx.write_limit()).await
    }

    /// Takes `n` tokens from the read bucket (`bufferevent_decrement_read_limit`);
    /// negative `n` gives them back. Nothing happens without an own limit.
    #[doc(alias = "bufferevent_decrement_read_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_decrement_read")]
    pub fn decrement_read_limit(&self, n: i64) {
        self.run(move |ctx| {
            ctx.decrement_read_limit(n);
        });
    }

    /// As [`decrement_read_limit`](Self::decrement_read_limit), for writing.
    #[doc(alias = "bufferevent_decrement_write_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_decrement_write")]
    pub fn decrement_write_limit(&self, n: i64) {
        self.run(move |ctx| {
            ctx.decrement_write_limit(n);
        });
    }

    /// How many bytes the next read may take now (`bufferevent_get_max_to_read`).
    ///
    /// # Errors
    ///
    /// Only [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)), if the
    /// bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only looks.
    #[doc(alias = "bufferevent_get_max_to_read")]
    pub async fn max_to_read(&self) -> Result<usize, Error> {
        self.with(|ctx| ctx.max_to_read()).await
    }

    /// How many bytes the next write may take now (`bufferevent_get_max_to_write`).
    ///
    /// # Errors
    ///
    /// Only [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)), if the
    /// bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only looks.
    #[doc(alias = "bufferevent_get_max_to_write")]
    pub async fn max_to_write(&self) -> Result<usize, Error> {
        self.with(|ctx| ctx.max_to_write()).await
    }
}

/// Token buckets shared by many bufferevents (`bufferevent_rate_limit_group`): the
/// members together move at most the group's rate, each getting an even share of every
/// tick (never less than the minimum share).
///
/// Cloneable, `Send + Sync`; members may run on any thread of any runtime, and touch
/// the group with atomics (a refill, once per tick, takes a short lock). A bufferevent
/// is in at most one group. When the last handle of a group is dropped while members
/// remain, the members leave it (libevent asserts instead).
///
/// Ticks are counted from when the group was made. Each member's share of a tick is
/// fixed when the tick begins: the bucket split evenly over the members, never less
/// than the minimum share; a member takes at most its share per tick, and the group's
/// bucket may go below 0 (then every member waits for the ticks the refill takes), so
/// the order in which members run decides nothing. Members see a refill at their next
/// pass after the tick. A member joining or leaving, or a
/// [`decrement_read_limit`](Self::decrement_read_limit) that takes the bucket across 0,
/// re-splits what is left among the members (taken to 0 or below, it silences them at
/// once); members that already took more than the new share wait for the next tick.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tokio_bufferevent::bufferevent::{BufferEvent, Direction, RateLimit, RateLimitGroup};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // All members together: 1000 bytes per 100 ms.
/// let group = RateLimitGroup::new(RateLimit::new(1000, 1000, 1000, 1000, Some(Duration::from_millis(100)))?);
/// let (a, b) = BufferEvent::pair();
/// b.enable(Direction::READ);
/// group.add(&a);
/// a.write(vec![0u8; 5000]).await?;
/// let started = tokio::time::Instant::now();
/// b.readable(5000).await;
/// assert!(started.elapsed() >= Duration::from_millis(400));
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[doc(alias = "bufferevent_rate_limit_group")]
pub struct RateLimitGroup {
    shared: Arc<GroupShared>,
    /// Dropped with the last handle: then the group dissolves.
    _alive: Arc<Dissolve>,
}

struct Dissolve(Arc<GroupShared>);

impl Drop for Dissolve {
    fn drop(&mut self) {
        self.0.dissolve();
    }
}

impl RateLimitGroup {
    /// A group (`bufferevent_rate_limit_group_new`); its buckets start at the rate.
    /// The minimum share is 64 bytes, clamped to the rates.
    #[doc(alias = "bufferevent_rate_limit_group_new")]
    pub fn new(limit: RateLimit) -> Self {
        let shared = Arc::new(GroupShared::new(limit, now()));
        Self {
            _alive: Arc::new(Dissolve(Arc::clone(&shared))),
            shared,
        }
    }

    /// Replaces the configuration (`bufferevent_rate_limit_group_set_cfg`): the
    /// buckets stay, clipped to the new bursts; the minimum share as set is clamped to
    /// the new rates (it may rise again after a configuration that lowered it).
    #[doc(alias = "bufferevent_rate_limit_group_set_cfg")]
    pub fn set_config(&self, limit: RateLimit) {
        self.shared.set_cfg(limit, now());
    }

    /// The configuration.
    pub fn config(&self) -> RateLimit {
        self.shared.cfg()
    }

    /// The least a member may move per tick while the group has tokens
    /// (`bufferevent_rate_limit_group_set_min_share`); 0 restores the default of
    /// 64. Clamped to the rates.
    #[doc(alias = "bufferevent_rate_limit_group_set_min_share")]
    pub fn set_min_share(&self, bytes: u64) {
        self.shared.set_min_share(bytes);
    }

    /// The minimum share in effect: as set, clamped to the current rates.
    pub fn min_share(&self) -> u64 {
        self.shared.min_share()
    }

    /// Adds `bev` (`bufferevent_add_to_rate_limit_group`), moving it out of any other
    /// group; adding it again does nothing. Applied by its task, in order with its
    /// other commands.
    #[doc(alias = "bufferevent_add_to_rate_limit_group")]
    pub fn add<T, S>(&self, bev: &BufferEvent<T, S>)
    where
        T: Send + 'static,
        S: Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        bev.run(move |ctx| {
            ctx.inner.core.join_group(shared, now());
        });
    }

    /// Removes `bev` if it is a member (`bufferevent_remove_from_rate_limit_group`),
    /// lifting the group's suspension at once.
    #[doc(alias = "bufferevent_remove_from_rate_limit_group")]
    pub fn remove<T, S>(&self, bev: &BufferEvent<T, S>)
    where
        T: Send + 'static,
        S: Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        bev.run(move |ctx| {
            if ctx
                .inner
                .core
                .group()
                .is_some_and(|g| Arc::ptr_eq(g, &shared))
            {
                ctx.inner.core.leave_group();
            }
        });
    }

    /// Members now (a member counts from when its task applied `add`).
    pub fn members(&self) -> usize {
        self.shared.members()
    }

    /// The group's read bucket (`bufferevent_rate_limit_group_get_read_limit`), brought
    /// up to now as libevent's tick timer would have (members refill it only as they
    /// run); may be negative.
    #[doc(alias = "bufferevent_get_read_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_get_read_limit")]
    pub fn read_limit(&self) -> i64 {
        self.shared.refill(now());
        self.shared.get(true)
    }

    /// The group's write bucket, as [`read_limit`](Self::read_limit).
    #[doc(alias = "bufferevent_get_write_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_get_write_limit")]
    pub fn write_limit(&self) -> i64 {
        self.shared.refill(now());
        self.shared.get(false)
    }

    /// Takes `n` read tokens from the group (negative `n` gives them back), from the
    /// bucket as of now.
    #[doc(alias = "bufferevent_decrement_read_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_decrement_read")]
    pub fn decrement_read_limit(&self, n: i64) {
        self.shared.refill(now());
        self.shared.decrement(true, n);
    }

    /// Takes `n` write tokens from the group (negative `n` gives them back), from the
    /// bucket as of now.
    #[doc(alias = "bufferevent_decrement_write_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_decrement_write")]
    pub fn decrement_write_limit(&self, n: i64) {
        self.shared.refill(now());
        self.shared.decrement(false, n);
    }

    /// Bytes read and written by members since the group was made or the totals
    /// reset (`bufferevent_rate_limit_group_get_totals`).
    #[doc(alias = "bufferevent_rate_limit_group_get_totals")]
    pub fn totals(&self) -> (u64, u64) {
        self.shared.totals()
    }

    /// Sets the totals back to 0 (`bufferevent_rate_limit_group_reset_totals`).
    #[doc(alias = "bufferevent_rate_limit_group_reset_totals")]
    pub fn reset_totals(&self) {
        self.shared.reset_totals();
    }
}

impl fmt::Debug for RateLimitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitGroup")
            .field("config", &self.config())
            .field("members", &self.members())
            .field("read_limit", &self.read_limit())
            .field("write_limit", &self.write_limit())
            .finish()
    }
}

/// Tokio's clock, which `tokio::time::pause()` controls, as the buckets count ticks.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
