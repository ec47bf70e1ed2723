//! Instants from the durations an application gives, which may be anything
//! from zero to `Duration::MAX`: `Instant + Duration` panics on overflow,
//! and a timer set centuries ahead is no different from one that never
//! fires.

use std::time::Duration;
use tokio::time::Instant;

/// The longest wait this crate arms a timer for: a hundred years, as good as
/// forever, and far from where `Instant` arithmetic overflows.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `duration` from now, saturating at [`FOREVER`].
pub(crate) fn instant_after(duration: Duration) -> Instant {
    Instant::now() + duration.min(FOREVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_duration_gives_an_instant() {
        for duration in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_secs(100 * 365 * 24 * 3600),
            Duration::from_millis(u64::MAX),
            Duration::MAX,
        ] {
            let at = instant_after(duration);
            assert!(at >= Instant::now() - Duration::from_secs(1));
        }
    }
}
