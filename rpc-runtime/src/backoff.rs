//! Delays between attempts at something that keeps failing: reconnecting to
//! the broker, or setting up a session.

use std::time::Duration;

/// The delay before attempt number `attempt` (0 for the first retry):
/// doubling from `min`, never above `max`, with "equal jitter" (a random
/// point in the upper half of the delay), so that many clients reconnecting
/// to one broker spread out while none waits longer than `max`.
pub(crate) fn delay(min: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = min.saturating_mul(1 << attempt.min(20)).min(max);
    let half = ceiling / 2;
    // Randomness without a dependency of its own: v4 UUIDs are random.
    let random = uuid::Uuid::new_v4().as_u64_pair().0 % 1024;
    half.saturating_add(half.mul_f64(random as f64 / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::delay;
    use std::time::Duration;

    #[test]
    fn delays_double_up_to_the_maximum_and_never_exceed_it() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for (min, max) in [
            (Duration::MAX, Duration::MAX),
            (Duration::ZERO, Duration::MAX),
        ] {
            for attempt in [0, 1, 20, 40, u32::MAX] {
                assert!(delay(min, max, attempt) <= max);
            }
        }
        for attempt in 0..40 {
            let ceiling = (min * 2u32.pow(attempt.min(20))).min(max);
            for _ in 0..20 {
                let delay = delay(min, max, attempt);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{attempt}: {delay:?}"
                );
            }
        }
    }
}
