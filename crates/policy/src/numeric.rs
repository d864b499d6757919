//! Numbers for `numerical` policies.
//!
//! Flux reads each candidate with Go's `strconv.ParseFloat(tag, 64)` and
//! compares float64s. We accept the decimal part of that syntax
//! (`[+-]? digits [. digits] [e [+-] digits]`, also `1.` and `.5`) and
//! compare exactly, so long build numbers and nanosecond timestamps that
//! collide as float64s still order correctly.

use std::cmp::Ordering;
use std::ops::Range;

/// A decimal number, as spans of the text it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decimal {
    negative: bool,
    /// The significant digits before the point (no leading zeros).
    integer: Range<usize>,
    /// The digits after the point (no trailing zeros).
    fraction: Range<usize>,
    /// The decimal exponent (`e` part), saturated far beyond any tag.
    exponent: i64,
}

/// Exponents are clamped to this, far past anything that changes an order
/// among numbers of at most a few hundred digits.
const EXPONENT_LIMIT: i64 = 1 << 40;

impl Decimal {
    /// Reads `text` as a decimal number, or `None`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i = 1;
                true
            }
            Some(b'+') => {
                i = 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let int_end = i;
        let mut frac_start = i;
        let mut frac_end = i;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            frac_start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            frac_end = i;
        }
        if int_end == int_start && frac_end == frac_start {
            return None;
        }
        let mut exponent: i64 = 0;
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            let exp_negative = match bytes.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
                exponent = (exponent * 10 + i64::from(d - b'0')).min(EXPONENT_LIMIT);
                i += 1;
            }
            if i == start {
                return None;
            }
            if exp_negative {
                exponent = -exponent;
            }
        }
        if i != bytes.len() {
            return None;
        }
        let leading_zeros = bytes[int_start..int_end]
            .iter()
            .take_while(|&&b| b == b'0')
            .count();
        let trailing_zeros = bytes[frac_start..frac_end]
            .iter()
            .rev()
            .take_while(|&&b| b == b'0')
            .count();
        Some(Self {
            negative,
            integer: int_start + leading_zeros..int_end,
            fraction: frac_start..frac_end - trailing_zeros,
            exponent,
        })
    }

    /// Whether the number is zero: leading zeros of the integer part and
    /// trailing zeros of the fraction are not in the spans, so a non-zero
    /// number always has a digit left in one of them.
    fn is_zero(&self) -> bool {
        self.integer.is_empty() && self.fraction.is_empty()
    }

    /// Compares `self` (read from `text`) with `other` (read from
    /// `other_text`) by value.
    pub(crate) fn cmp(&self, text: &str, other: &Decimal, other_text: &str) -> Ordering {
        let sign = |d: &Decimal| match (d.is_zero(), d.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        let (sa, sb) = (sign(self), sign(other));
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        let by_magnitude = self.cmp_magnitude(text, other, other_text);
        if sa < 0 {
            by_magnitude.reverse()
        } else {
            by_magnitude
        }
    }

    /// Compares absolute values; neither is zero.
    fn cmp_magnitude(&self, text: &str, other: &Decimal, other_text: &str) -> Ordering {
        let a = Magnitude::of(self, text);
        let b = Magnitude::of(other, other_text);
        a.scale.cmp(&b.scale).then_with(|| {
            // Same scale: compare digit by digit, missing digits being zero.
            // Integers of the same length (the common case) are one memcmp.
            if self.fraction.is_empty()
                && other.fraction.is_empty()
                && a.digits[0].len() == b.digits[0].len()
            {
                return a.digits[0].cmp(b.digits[0]);
            }
            let mut left = a.digits();
            let mut right = b.digits();
            loop {
                match (left.next(), right.next()) {
                    (None, None) => return Ordering::Equal,
                    (l, r) => {
                        let order = l.unwrap_or(b'0').cmp(&r.unwrap_or(b'0'));
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                }
            }
        })
    }
}

/// A non-zero `0.DIGITS × 10^scale`, DIGITS starting with a non-zero digit.
struct Magnitude<'a> {
    digits: [&'a [u8]; 2],
    scale: i64,
}

impl<'a> Magnitude<'a> {
    fn of(d: &Decimal, text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let integer = &bytes[d.integer.clone()];
        let fraction = &bytes[d.fraction.clone()];
        if integer.is_empty() {
            // 0.000123: the scale is minus the zeros after the point.
            let zeros = fraction.iter().take_while(|&&b| b == b'0').count();
            Self {
                digits: [&fraction[zeros..], &[]],
                scale: d.exponent.saturating_sub(zeros as i64),
            }
        } else {
            Self {
                digits: [integer, fraction],
                scale: d.exponent.saturating_add(integer.len() as i64),
            }
        }
    }

    fn digits(&self) -> impl Iterator<Item = u8> + 'a {
        let [first, second] = self.digits;
        first.iter().chain(second.iter()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        let x = Decimal::parse(a).unwrap_or_else(|| panic!("{a:?}"));
        let y = Decimal::parse(b).unwrap_or_else(|| panic!("{b:?}"));
        x.cmp(a, &y, b)
    }

    #[test]
    fn accepts_go_decimal_floats() {
        for text in [
            "0",
            "7",
            "-62",
            "+5",
            "1606234201",
            "3.14",
            "-27.8520927455902",
            "1.",
            ".5",
            "1e3",
            "1E3",
            "1e-3",
            "1e+3",
            "007",
            "0.000",
            "1.5e400",
        ] {
            assert!(Decimal::parse(text).is_some(), "{text:?}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for text in [
            "", "-", "+", ".", "e3", "1e", "1e+", "1a", "b", "1.2.3", "0x10", "0x1p4", "inf",
            "Inf", "NaN", "Infinity", "1_000", " 1", "1 ", "--1", "1..2", "latest",
        ] {
            assert!(Decimal::parse(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn orders_by_value() {
        let ascending = [
            "-1e400",
            "-91",
            "-88.5",
            "-1",
            "-0.5",
            "-0.0001",
            "0",
            "0.0001",
            "0.5",
            "1",
            "1.5",
            "9",
            "10",
            "72",
            "73",
            "1e3",
            "1606234201",
            "1606364286",
            "1e400",
        ];
        for pair in ascending.windows(2) {
            assert_eq!(cmp(pair[0], pair[1]), Ordering::Less, "{pair:?}");
            assert_eq!(cmp(pair[1], pair[0]), Ordering::Greater, "{pair:?}");
        }
    }

    #[test]
    fn equal_spellings() {
        for (a, b) in [
            ("1", "1.0"),
            ("1", "01"),
            ("10", "1e1"),
            ("100", "1e2"),
            ("0.5", ".5"),
            ("0.5", "5e-1"),
            ("0", "-0"),
            ("0", "0e9"),
            ("1.", "1"),
            ("+3", "3"),
            ("120", "1.2e2"),
        ] {
            assert_eq!(cmp(a, b), Ordering::Equal, "{a} vs {b}");
        }
    }

    #[test]
    fn exact_beyond_float64() {
        // Equal as float64s (both 2^53 + 1 round to 2^53).
        assert_eq!(cmp("9007199254740992", "9007199254740993"), Ordering::Less);
        assert_eq!(
            cmp("1700000000000000001", "1700000000000000000"),
            Ordering::Greater
        );
    }
}
