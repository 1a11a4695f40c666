//! When to try again, and how long to wait first.
//!
//! Capped exponential backoff with jitter (oras waits 0.25 s and doubles; we do the same),
//! and a server's `Retry-After` (seconds or an HTTP date) taken as given, up to a cap, since
//! ghcr and Docker Hub say exactly how long their rate limit lasts.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tries after the first one, per request. Defaults to 5, like oras; `--retries` sets it.
pub const DEFAULT_RETRIES: u32 = 5;
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A longer `Retry-After` than this is cut down to it: a CI job would rather fail.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The retry budget of one request or one download.
#[derive(Debug)]
pub struct Backoff {
    retries: u32,
    done: u32,
}

impl Backoff {
    pub fn new(retries: u32) -> Backoff {
        Backoff { retries, done: 0 }
    }

    /// How long to wait before the next try, or `None` when the budget is spent.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.done >= self.retries {
            return None;
        }
        self.done += 1;
        Some(match retry_after {
            Some(wait) => wait.min(MAX_RETRY_AFTER),
            None => jitter(
                FIRST_DELAY
                    .saturating_mul(1 << (self.done - 1).min(16))
                    .min(MAX_DELAY),
            ),
        })
    }

    /// Tries used so far, for status lines ("retry 2 of 5").
    pub fn used(&self) -> (u32, u32) {
        (self.done, self.retries)
    }

    /// A download that made progress since its last break earns its budget back, so a
    /// long transfer over a flaky link is not failed by breaks spread over hours.
    pub fn reset(&mut self) {
        self.done = 0;
    }
}

/// Statuses worth another try: timeouts, rate limits and server trouble.
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Half to all of `delay`, so clients that failed together do not retry together.
fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().build_hasher().finish();
    delay.mul_f64(0.5 + (random % 1000) as f64 / 2000.0)
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = UNIX_EPOCH + Duration::from_secs(parse_http_date(value)?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// IMF-fixdate (RFC 9110 5.6.7), the only form servers may send, as Unix seconds.
fn parse_http_date(s: &str) -> Option<u64> {
    let mut parts = s.split_ascii_whitespace();
    let _weekday = parts.next()?.strip_suffix(',')?;
    let day: u64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as u64
        + 1;
    let year: u64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|n| n.parse::<u64>().ok());
    let (h, m, sec) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's algorithm), year >= 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds_and_stops() {
        let mut b = Backoff::new(3);
        let d1 = b.next_delay(None).unwrap();
        let d2 = b.next_delay(None).unwrap();
        let d3 = b.next_delay(None).unwrap();
        assert!(d1 >= FIRST_DELAY / 2 && d1 <= FIRST_DELAY, "{d1:?}");
        assert!(d2 >= FIRST_DELAY && d2 <= FIRST_DELAY * 2, "{d2:?}");
        assert!(d3 >= FIRST_DELAY * 2 && d3 <= FIRST_DELAY * 4, "{d3:?}");
        assert_eq!(b.next_delay(None), None);
        b.reset();
        assert!(b.next_delay(None).is_some());

        let mut long = Backoff::new(40);
        for _ in 0..39 {
            assert!(long.next_delay(None).unwrap() <= MAX_DELAY);
        }
        assert_eq!(Backoff::new(0).next_delay(None), None);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let mut b = Backoff::new(2);
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(3600))),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn reads_retry_after_values() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21 07:27:50 GMT
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        for bad in [
            "",
            "-1",
            "soon",
            "Wed, 21 Oct 2015 07:28:00",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:28:00 GMT",
            "Wed, 21 Oct 2015 07:28 GMT",
            "Wed 21 Oct 2015 07:28:00 GMT x",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
