//! Waiting on a `Notify` for a condition, without missing a notification.

use std::pin::pin;

use tokio::sync::Notify;

/// Resolves once `ready` holds, checking it again after each notification of `notify`.
/// The waiter registers before each check, so a change notified (with
/// `notify_waiters`) between the check and the wait is not missed.
///
/// Cancel safe: nothing is consumed.
pub(crate) async fn until(notify: &Notify, mut ready: impl FnMut() -> bool) {
    loop {
        let mut notified = pin!(notify.notified());
        notified.as_mut().enable();
        if ready() {
            return;
        }
        notified.await;
    }
}
