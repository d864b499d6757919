//! Back-off and rate limiting, as pure computations over explicit time so
//! they are tested without sleeping:
//!
//! - [`backoff_delay`]: exponential back-off with jitter for 5xx answers and
//!   timeouts, so many scanners hitting a sick registry spread out;
//! - [`parse_retry_after`]: a 429's `Retry-After` (seconds or HTTP date),
//!   which is honoured as given;
//! - [`TokenBucket`]: the per-registry request budget every repository
//!   scanned by an instance draws from.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// The delay before retry number `attempt` (1 for the first retry):
/// `base * 2^(attempt-1)`, capped at `max`, of which the upper half is
/// scaled by `jitter` (a number in `[0, 1)`): "equal jitter", so a delay is
/// never less than half the exponential step and never more than the cap.
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let step = base.saturating_mul(1u32 << exponent).min(max);
    let half = step / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A `Retry-After` value: delay seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), relative to `now`. A date in the past
/// is no delay; anything unreadable is `None` (the caller backs off instead).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// A token bucket: `rate` requests per second on average, bursts of up to
/// `burst`, and a pause (after a 429) during which nothing is sent.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(0.001),
            burst,
            tokens: burst,
            last: now,
            paused_until: None,
        }
    }

    /// Takes one token at `now`, or says how long to wait before trying
    /// again.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(until - now);
            }
            self.paused_until = None;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Sends nothing before `until` (a registry's `Retry-After` applies to
    /// every repository on it, not only the one that was told).
    pub fn pause_until(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|current| current < until) {
            self.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_bounds() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(backoff_delay(1, base, max, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(1, base, max, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(3, base, max, 0.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(10, base, max, 1.0), max);
        assert_eq!(
            backoff_delay(u32::MAX, base, max, 0.5),
            Duration::from_millis(1500)
        );
        let a = backoff_delay(4, base, max, 0.1);
        let b = backoff_delay(4, base, max, 0.9);
        assert!(a < b, "jitter spreads retries");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(bucket.take(t0), Ok(()));
        }
        let wait = bucket.take(t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert_eq!(bucket.take(t0 + Duration::from_millis(100)), Ok(()));
        assert!(bucket.take(t0 + Duration::from_millis(100)).is_err());
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Ok(()), "refills up to the burst only");
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn a_pause_holds_every_request_until_it_ends() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 10, t0);
        bucket.pause_until(t0 + Duration::from_secs(5));
        bucket.pause_until(t0 + Duration::from_secs(1));
        assert_eq!(bucket.take(t0), Err(Duration::from_secs(5)));
        assert_eq!(
            bucket.take(t0 + Duration::from_secs(2)),
            Err(Duration::from_secs(3))
        );
        assert_eq!(bucket.take(t0 + Duration::from_secs(5)), Ok(()));
    }
}
