//! How a stream waits on the ownership view: a new stream until its shard has a route, a
//! forwarded stream between two attempts to reach its shard's owner. Both wake on the view's
//! changes (`watch::Receiver::changed`: a shard moved, a member came or went, a heartbeat was
//! applied), not on a timer, with
//! - a random floor after each wake-up, so the streams one change wakes do not all try at
//!   once (a failover wakes thousands);
//! - a back-off that grows while attempts on the same route keep failing and changes keep
//!   coming (a dead owner not marked down yet), and that starts over on a new route;
//! - a deadline, and the back-off as a timer when nothing changes (an owner that refuses
//!   for a reason the view does not show, such as a broken connection).
//!
//! Times are tokio's, so tests run them on a paused clock.

use std::sync::Arc;
use std::time::Duration;

use shoal_shard::{Ownership, Route};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// The random pause after a wake-up lies in `[SPREAD_MIN, SPREAD_MAX]`.
pub(crate) const SPREAD_MIN: Duration = Duration::from_millis(5);
pub(crate) const SPREAD_MAX: Duration = Duration::from_millis(50);
/// The back-off after the first failure on a route; it doubles with each further one.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(50);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

fn spread() -> Duration {
    SPREAD_MIN + (SPREAD_MAX - SPREAD_MIN).mul_f64(rand::random::<f64>())
}

/// Waits until the view changes (true) or `until` (false). A view whose sender is gone
/// never changes again: this then waits for `until` (no spinning on the closed channel).
async fn changed(view: &mut watch::Receiver<Arc<Ownership>>, until: Instant) -> bool {
    let change = async {
        if view.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = change => true,
        () = sleep_until(until) => false,
    }
}

/// Waits (until `deadline`) for `shard` to have a route; [`Route::Unavailable`] if it has
/// none by then. A stream that had to wait starts a random moment after the change.
pub(crate) async fn route(
    view: &mut watch::Receiver<Arc<Ownership>>,
    shard: u32,
    deadline: Instant,
) -> Route {
    loop {
        let r = view.borrow_and_update().route(shard);
        if r != Route::Unavailable || Instant::now() >= deadline {
            return r;
        }
        if !changed(view, deadline).await {
            return Route::Unavailable;
        }
        sleep_until((Instant::now() + spread()).min(deadline)).await;
    }
}

/// The pacing of one forwarded stream's attempts on its owners.
#[derive(Debug, Default)]
pub(crate) struct Pacing {
    /// The route of the failed attempts counted in `failures`.
    tried: Option<Route>,
    failures: u32,
}

impl Pacing {
    /// An attempt succeeded: the next failure starts the back-off over.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// The back-off after `failures` failures in a row on one route.
    pub(crate) fn backoff(failures: u32) -> Duration {
        FIRST_BACKOFF
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(MAX_BACKOFF)
    }

    /// Pauses after an attempt on `tried` (the route of `shard` it used) failed, until the
    /// next attempt. The pause ends
    /// - shortly (a random spread) after the view routes the shard elsewhere;
    /// - on any other change of the view, but no sooner than a random floor of a quarter to
    ///   a half of the back-off, which grows with failures in a row on `tried`;
    /// - at the back-off at the latest, and never after `deadline`.
    pub(crate) async fn after_failure(
        &mut self,
        view: &mut watch::Receiver<Arc<Ownership>>,
        shard: u32,
        tried: &Route,
        deadline: Instant,
    ) {
        if self.tried.as_ref() != Some(tried) {
            self.tried = Some(tried.clone());
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        let backoff = Self::backoff(self.failures);
        let start = Instant::now();
        let floor = start + backoff.mul_f64(0.25 + 0.25 * rand::random::<f64>());
        let latest = (start + backoff).min(deadline);
        if !changed(view, latest).await {
            return;
        }
        let moved = view.borrow().route(shard) != *tried;
        let at = if moved {
            Instant::now() + spread()
        } else {
            floor.max(Instant::now() + spread())
        };
        sleep_until(at.min(if moved { deadline } else { latest })).await;
    }
}

#[cfg(test)]
mod tests;
