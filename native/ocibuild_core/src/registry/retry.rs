//! Which registry failures are worth another try, and how long to wait before it.
//!
//! Waits grow exponentially from `base_delay` up to `max_delay`, with ±20% jitter so the
//! parallel uploads of one push that all hit a 429 together do not all come back together.
//! A server's `Retry-After` wins over our own schedule, within [`MAX_RETRY_AFTER`].
//!
//! ```
//! use std::time::Duration;
//! use ocibuild_core::registry::retry::RetryPolicy;
//! let policy = RetryPolicy::default();
//! assert!(policy.delay(3, None) <= Duration::from_millis(960));
//! assert_eq!(policy.delay(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

/// The longest `Retry-After` we honour; a server asking for more gets this, so a job does not
/// hang for an hour on one header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How far jitter moves a delay either way, in percent.
const JITTER_PERCENT: u64 = 20;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempt` failures (1 after the first). `retry_after` is the server's
    /// `Retry-After`, if it sent one.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(MAX_RETRY_AFTER),
            None => jitter(self.backoff(attempt), random_u64()).min(self.max_delay),
        }
    }

    /// `base_delay * 2^(attempt-1)` capped at `max_delay`, without jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }
}

/// 408 (request timeout), 429 (too many requests) and server errors, except those that will
/// not change on a retry: 501 (not implemented) and 505 (HTTP version not supported).
pub fn is_retryable_status(status: u16) -> bool {
    match status {
        408 | 429 => true,
        501 | 505 => false,
        500..=599 => true,
        _ => false,
    }
}

/// A `Retry-After` value: delta-seconds or an HTTP-date, as a wait from `now`. A date in the
/// past means no wait; anything else unparsable is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time"; the caller caps it.
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Scale `d` by a factor in [1 - 20%, 1 + 20%] chosen by `random`.
fn jitter(d: Duration, random: u64) -> Duration {
    let span = 2 * JITTER_PERCENT + 1;
    let percent = 100 - JITTER_PERCENT + random % span;
    let nanos = d.as_nanos().saturating_mul(u128::from(percent)) / 100;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Cheap randomness without a crate: std's per-instance randomly keyed hasher, fed the clock.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    h.write_u32(nanos);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn default_policy() {
        let p = RetryPolicy::default();
        assert_eq!(
            (p.max_attempts, p.base_delay, p.max_delay),
            (5, ms(200), ms(10_000))
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        let waits: Vec<_> = (1..=8).map(|a| p.backoff(a)).collect();
        assert_eq!(
            waits,
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000].map(ms)
        );
        // Attempt 0 is treated as the first failure; huge attempts do not overflow.
        assert_eq!(p.backoff(0), ms(200));
        assert_eq!(p.backoff(u32::MAX), ms(10_000));
        let huge = RetryPolicy {
            base_delay: Duration::from_secs(u64::MAX / 2),
            max_delay: Duration::MAX,
            ..p
        };
        assert_eq!(huge.backoff(3), Duration::MAX);
    }

    #[test]
    fn delay_stays_within_jitter_bounds_and_the_cap() {
        let p = RetryPolicy::default();
        for attempt in 1..=10 {
            let base = p.backoff(attempt);
            for _ in 0..50 {
                let d = p.delay(attempt, None);
                assert!(d >= base * 4 / 5, "{attempt}: {d:?} < {base:?} - 20%");
                assert!(d <= base * 6 / 5, "{attempt}: {d:?} > {base:?} + 20%");
                assert!(d <= p.max_delay);
            }
        }
    }

    #[test]
    fn jitter_covers_its_range() {
        let d = Duration::from_secs(1);
        assert_eq!(jitter(d, 0), ms(800));
        assert_eq!(jitter(d, 20), ms(1000));
        assert_eq!(jitter(d, 40), ms(1200));
        assert_eq!(jitter(d, 41), ms(800));
        assert_eq!(jitter(Duration::ZERO, 7), Duration::ZERO);
        assert_eq!(jitter(Duration::MAX, 40), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn zero_base_delay_means_no_wait() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        };
        assert_eq!(p.delay(2, None), Duration::ZERO);
    }

    #[test]
    fn retry_after_wins_within_a_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, Some(ms(30_000))), ms(30_000));
        assert_eq!(p.delay(4, Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), MAX_RETRY_AFTER);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504, 507, 599] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [
            200, 201, 202, 301, 400, 401, 403, 404, 409, 416, 501, 505, 600,
        ] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::MAX)
        );
    }

    #[test]
    fn retry_after_dates() {
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 s after the epoch.
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let value = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(value, date - Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after(value, date), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(value, date + Duration::from_secs(30)),
            Some(Duration::ZERO)
        );
        // The obsolete formats HTTP-date also allows.
        let rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT";
        let asctime = "Sun Nov  6 08:49:37 1994";
        for v in [rfc850, asctime] {
            assert_eq!(
                parse_retry_after(v, date - Duration::from_secs(5)),
                Some(Duration::from_secs(5)),
                "{v}"
            );
        }
    }

    #[test]
    fn retry_after_garbage() {
        let now = SystemTime::now();
        for v in [
            "",
            "  ",
            "-5",
            "1.5",
            "soon",
            "10s",
            "Sun, 99 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now), None, "{v:?}");
        }
    }
}
