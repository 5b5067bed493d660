//! How long we wait for a registry: a deadline for a response's headers, and a minimum
//! transfer rate for bodies in both directions, so a registry that trickles one byte every
//! ten seconds (or stops reading our upload) ends the job with a timeout instead of holding
//! it for hours.
//!
//! The rate is judged over whole windows (60 s by default), not per read: a link that stalls
//! for a few seconds and then catches up is healthy; one that moves less than
//! `min_rate * window` bytes in a window is not.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ocibuild_core::registry::timeouts::{RateMeter, Timeouts};
//! let t = Timeouts { headers: Duration::from_secs(60), min_rate: 1024, window: Duration::from_secs(60) };
//! let start = Instant::now();
//! let mut meter = RateMeter::new(&t, start);
//! assert!(meter.check(start + Duration::from_secs(60), 70_000).is_ok());
//! assert!(meter.check(start + Duration::from_secs(120), 70_010).is_err());
//! ```

use std::time::{Duration, Instant};

use super::Environment;
use crate::{Error, Result};

pub const TIMEOUT_ENV: &str = "OCIBUILD_REGISTRY_TIMEOUT";
pub const MIN_RATE_ENV: &str = "OCIBUILD_MIN_TRANSFER_RATE";
pub const WINDOW_ENV: &str = "OCIBUILD_TRANSFER_RATE_WINDOW";

/// Longer than any of these may be set to: a day, so that `Instant + limit` never overflows.
const MAX_LIMIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// From the moment the request (body included) is sent to the response's headers.
    pub headers: Duration,
    /// Bytes per second a body must move, averaged over `window`; 0 turns the check off.
    pub min_rate: u64,
    pub window: Duration,
}

impl Default for Timeouts {
    /// Generous enough never to cut a healthy slow link: a minute for headers, 1 KiB/s over
    /// a minute for bodies.
    fn default() -> Self {
        Timeouts {
            headers: Duration::from_secs(60),
            min_rate: 1024,
            window: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// The defaults, with what `OCIBUILD_REGISTRY_TIMEOUT` (seconds, decimals allowed),
    /// `OCIBUILD_MIN_TRANSFER_RATE` (bytes/s) and `OCIBUILD_TRANSFER_RATE_WINDOW` (seconds)
    /// say instead.
    pub fn from_env(env: &Environment) -> Result<Timeouts> {
        let mut t = Timeouts::default();
        if let Some(v) = env.var_string(TIMEOUT_ENV) {
            t.headers = parse_seconds(TIMEOUT_ENV, &v)?;
        }
        if let Some(v) = env.var_string(MIN_RATE_ENV) {
            t.min_rate = v.trim().parse().map_err(|_| Error::InvalidOption {
                name: MIN_RATE_ENV,
                why: format!("{v:?} is not a whole number of bytes per second"),
            })?;
        }
        if let Some(v) = env.var_string(WINDOW_ENV) {
            t.window = parse_seconds(WINDOW_ENV, &v)?;
        }
        Ok(t)
    }
}

fn parse_seconds(name: &'static str, value: &str) -> Result<Duration> {
    let invalid = || Error::InvalidOption {
        name,
        why: format!(
            "{value:?} is not a number of seconds between 0 and {}",
            MAX_LIMIT.as_secs()
        ),
    };
    let secs: f64 = value.trim().parse().map_err(|_| invalid())?;
    let d = Duration::try_from_secs_f64(secs).map_err(|_| invalid())?;
    if d.is_zero() || d > MAX_LIMIT {
        return Err(invalid());
    }
    Ok(d)
}

/// Bytes moved so far against the minimum rate, one window at a time.
#[derive(Clone, Debug)]
pub struct RateMeter {
    min_rate: u64,
    window: Duration,
    window_start: Instant,
    bytes_at_window_start: u64,
}

/// The body moved fewer bytes in a window than the minimum rate asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooSlow;

impl RateMeter {
    pub fn new(timeouts: &Timeouts, now: Instant) -> RateMeter {
        RateMeter {
            min_rate: timeouts.min_rate,
            window: timeouts.window.min(MAX_LIMIT),
            window_start: now,
            bytes_at_window_start: 0,
        }
    }

    /// When the current window ends, which is when [`RateMeter::check`] next has something
    /// to judge.
    pub fn next_check(&self) -> Instant {
        self.window_start + self.window
    }

    /// `total` bytes have moved by `now`: fails when a whole window went by with too few.
    /// Before the window's end there is nothing to judge yet.
    pub fn check(&mut self, now: Instant, total: u64) -> std::result::Result<(), TooSlow> {
        if now < self.next_check() {
            return Ok(());
        }
        let moved = total.saturating_sub(self.bytes_at_window_start);
        let needed = u128::from(self.min_rate) * self.window.as_millis() / 1000;
        if u128::from(moved) < needed {
            return Err(TooSlow);
        }
        // A new window starts even when the check is off, so callers that sleep until
        // `next_check` never spin.
        self.window_start = now;
        self.bytes_at_window_start = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::ffi::OsString;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v))),
        )
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(Timeouts::from_env(&env(&[])).unwrap(), Timeouts::default());
        let t = Timeouts::from_env(&env(&[
            (TIMEOUT_ENV, "0.5"),
            (MIN_RATE_ENV, "0"),
            (WINDOW_ENV, " 2 "),
        ]))
        .unwrap();
        assert_eq!(t.headers, Duration::from_millis(500));
        assert_eq!(t.min_rate, 0);
        assert_eq!(t.window, Duration::from_secs(2));
    }

    #[test]
    fn nonsense_values_are_invalid_options() {
        for (name, value) in [
            (TIMEOUT_ENV, "soon"),
            (TIMEOUT_ENV, "0"),
            (TIMEOUT_ENV, "-3"),
            (TIMEOUT_ENV, "NaN"),
            (TIMEOUT_ENV, "inf"),
            (TIMEOUT_ENV, "1e300"),
            (MIN_RATE_ENV, "1.5"),
            (MIN_RATE_ENV, "-1"),
            (WINDOW_ENV, "100000"),
        ] {
            match Timeouts::from_env(&env(&[(name, value)])) {
                Err(Error::InvalidOption { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_trickle_fails_the_first_window_a_healthy_link_passes_them_all() {
        let t = Timeouts {
            headers: Duration::from_secs(1),
            min_rate: 100,
            window: Duration::from_secs(10),
        };
        let start = Instant::now();
        let mut healthy = RateMeter::new(&t, start);
        let mut trickle = RateMeter::new(&t, start);
        for w in 1..=5u64 {
            let now = start + Duration::from_secs(10 * w);
            assert_eq!(healthy.check(now, 1000 * w), Ok(()));
            assert_eq!(healthy.next_check(), now + t.window);
        }
        assert_eq!(trickle.check(start + Duration::from_secs(9), 1), Ok(()));
        assert_eq!(
            trickle.check(start + Duration::from_secs(10), 999),
            Err(TooSlow)
        );
    }

    proptest! {
        // Whatever the clock and the counts, the meter neither panics nor passes a window
        // that moved fewer bytes than the rate asks for.
        #[test]
        fn prop_rate_meter_judges_whole_windows(
            rate in 0u64..=u64::MAX,
            window_ms in 1u64..=86_400_000,
            steps in proptest::collection::vec((0u64..=200_000, 0u64..=u64::MAX / 64), 1..20),
        ) {
            let t = Timeouts { headers: Duration::from_secs(1), min_rate: rate, window: Duration::from_millis(window_ms) };
            let start = Instant::now();
            let mut meter = RateMeter::new(&t, start);
            let (mut elapsed, mut total) = (0u64, 0u64);
            for (dt, more) in steps {
                elapsed += dt;
                total = total.saturating_add(more);
                let before = meter.clone();
                let now = start + Duration::from_millis(elapsed);
                let verdict = meter.check(now, total);
                let judged = now >= before.next_check();
                let moved = u128::from(total - before.bytes_at_window_start);
                let needed = u128::from(rate) * u128::from(window_ms) / 1000;
                prop_assert_eq!(verdict.is_err(), judged && moved < needed);
                if verdict.is_err() { break; }
                // After any judgement the next one is a whole window away: no spinning.
                prop_assert!(meter.next_check() > now || !judged);
            }
        }
    }
}
