//! The 33-bit, 90 kHz PTS/DTS clock (ISO/IEC 13818-1 2.4.3.7) unwrapped
//! into a 64-bit timeline with serial arithmetic.
//!
//! The counter wraps every 2^33 ticks (26.5 hours). One [`Clock`] serves a
//! whole program, so that audio and video straddling a wrap stay on the
//! same timeline: each value is read as the point nearest to the previous
//! one (of any stream) modulo 2^33.

/// Ticks per second of PTS and DTS.
pub const TIMESCALE: u32 = 90_000;

/// The counter's modulus.
pub const WRAP: i64 = 1 << 33;

/// Unwraps 33-bit time stamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    last: Option<i64>,
}

impl Clock {
    /// A clock that takes its first value as is.
    pub fn new() -> Self {
        Clock::default()
    }

    /// The 64-bit time of the 33-bit value `raw` (higher bits ignored):
    /// the first value as is, each later one the nearest to the one
    /// before, modulo 2^33 (a step of 2^32 or more forward is backward).
    pub fn unwrap(&mut self, raw: u64) -> i64 {
        let raw = (raw as i64) & (WRAP - 1);
        let t = match self.last {
            None => raw,
            Some(last) => {
                // Residues mod 2^33 survive wrapping mod 2^64.
                let mut step = raw.wrapping_sub(last).rem_euclid(WRAP);
                if step >= WRAP / 2 {
                    step -= WRAP;
                }
                last.saturating_add(step)
            }
        };
        self.last = Some(t);
        t
    }

    /// The last value unwrapped.
    pub fn last(&self) -> Option<i64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_as_is_then_nearest() {
        let mut c = Clock::new();
        assert_eq!(c.unwrap(1000), 1000);
        assert_eq!(c.unwrap(4600), 4600);
        assert_eq!(c.unwrap(900), 900);
        // Higher bits are not part of the value.
        assert_eq!(c.unwrap((1 << 40) | 1000), 1000);
    }

    #[test]
    fn forward_across_the_wrap_and_back() {
        let mut c = Clock::new();
        let near = (WRAP - 3600) as u64;
        assert_eq!(c.unwrap(near), WRAP - 3600);
        assert_eq!(c.unwrap(0), WRAP);
        assert_eq!(c.unwrap(3600), WRAP + 3600);
        // A B-frame's PTS before the wrap, after a DTS past it.
        assert_eq!(c.unwrap(near + 1800), WRAP - 1800);
        assert_eq!(c.unwrap(7200), WRAP + 7200);
        // Two wraps on.
        let mut t = WRAP + 7200;
        for _ in 0..8 {
            t += WRAP / 4;
            assert_eq!(c.unwrap(t as u64), t);
        }
    }

    #[test]
    fn backward_before_the_first_value_goes_negative() {
        let mut c = Clock::new();
        assert_eq!(c.unwrap(100), 100);
        assert_eq!(c.unwrap((WRAP - 100) as u64), -100);
    }
}
