//! Pausing between attempts to reach a service that failed.

use std::time::Duration;

/// 100 ms, doubling per consecutive failure, at most `max`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    doubling(Duration::from_millis(100), failures, max)
}

/// `first` after the first failure (and before any), doubling per failure after it, at most
/// `max`.
pub fn doubling(first: Duration, failures: u32, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100_ms_up_to_its_bound() {
        let max = Duration::from_secs(5);
        let pauses: Vec<u128> = (0..=8).map(|n| backoff(n, max).as_millis()).collect();
        assert_eq!(
            pauses,
            vec![100, 100, 200, 400, 800, 1600, 3200, 5000, 5000]
        );
        assert_eq!(
            backoff(u32::MAX, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn doubling_stops_growing_after_sixteen_doublings() {
        let second = Duration::from_secs(1);
        assert_eq!(
            doubling(second, u32::MAX, Duration::MAX),
            Duration::from_secs(1 << 16)
        );
        let hour = Duration::from_secs(3600);
        assert_eq!(doubling(second, 12, hour), Duration::from_secs(2048));
        assert_eq!(doubling(second, 13, hour), hour);
    }
}
