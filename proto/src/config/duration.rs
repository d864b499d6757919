//! Go durations, the format of every Flux `interval` and `timeout`.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: must match ^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$ (for example 30s, 5m, 1h30m)")]
pub struct DurationError(pub String);

/// Parses a duration in the subset of Go's syntax that Flux's CRDs accept,
/// `^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`, so that what Flux's API server would
/// refuse is refused here too.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    if text.is_empty() {
        return Err(err());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return Err(err());
        }
        let mut number_len = int_len;
        if rest[int_len..].starts_with('.') {
            let frac_len = rest[int_len + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if frac_len == 0 {
                return Err(err());
            }
            number_len += 1 + frac_len;
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| err())?;
        rest = &rest[number_len..];
        let (unit_seconds, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return Err(err());
        };
        total += number * unit_seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_flux_durations() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("250ms", 250),
            ("1m0s", 60_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_go_duration(text).map(|d| d.as_millis()),
                Ok(millis),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_the_crd_pattern_refuses() {
        for bad in ["", "5", "1d", "-1s", "1.s", ".5s", "1 m", "1us", "m", "5M"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
    }
}
