//! Typed media time: a [`Timescale`] (ticks per second), [`Ticks`] in it,
//! checked rescaling that errors instead of wrapping, and [`RtmpClock`],
//! which unwraps RTMP's 32-bit millisecond clock with serial arithmetic
//! (RFC 1982).

use std::num::NonZeroU32;

/// Errors of time arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// A timescale of zero.
    #[error("timescale must be non-zero")]
    ZeroTimescale,
    /// The result does not fit in 64 bits.
    #[error("time value overflows")]
    Overflow,
}

/// Result of time arithmetic.
pub type Result<T> = std::result::Result<T, TimeError>;

/// Ticks per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timescale(NonZeroU32);

impl Timescale {
    /// Milliseconds (RTMP, FLV).
    pub const MILLIS: Timescale = Timescale(NonZeroU32::new(1000).expect("non-zero"));
    /// The MPEG 90 kHz clock.
    pub const MPEG: Timescale = Timescale(NonZeroU32::new(90_000).expect("non-zero"));
    /// Smooth Streaming's 10 MHz (100 ns) clock.
    pub const HNS: Timescale = Timescale(NonZeroU32::new(10_000_000).expect("non-zero"));

    /// A timescale, or an error for zero.
    pub fn new(ticks_per_second: u32) -> Result<Self> {
        NonZeroU32::new(ticks_per_second)
            .map(Timescale)
            .ok_or(TimeError::ZeroTimescale)
    }

    /// Ticks per second.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// A time value in some timescale (the timescale travels beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ticks(pub u64);

impl Ticks {
    /// Converts from one timescale to another, rounding to nearest.
    pub fn rescale(self, from: Timescale, to: Timescale) -> Result<Ticks> {
        mul_div_round(self.0, u64::from(to.get()), u64::from(from.get())).map(Ticks)
    }

    /// Converts from one timescale to another, rounding down.
    pub fn rescale_floor(self, from: Timescale, to: Timescale) -> Result<Ticks> {
        mul_div_floor(self.0, u64::from(to.get()), u64::from(from.get())).map(Ticks)
    }

    /// Checked addition.
    pub fn checked_add(self, other: Ticks) -> Result<Ticks> {
        self.0
            .checked_add(other.0)
            .map(Ticks)
            .ok_or(TimeError::Overflow)
    }
}

/// `value * num / den` rounded to nearest, computed in 128 bits; an error if
/// `den` is zero or the result does not fit in `u64`.
pub fn mul_div_round(value: u64, num: u64, den: u64) -> Result<u64> {
    if den == 0 {
        return Err(TimeError::ZeroTimescale);
    }
    // Fast path: 64-bit arithmetic when nothing overflows (media times do
    // not come near it); 128-bit division is a library call, in Wasm too,
    // and manifests of long windows do this per fragment.
    if let Some(n) = value.checked_mul(num).and_then(|p| p.checked_add(den / 2)) {
        return Ok(n / den);
    }
    let wide = (u128::from(value) * u128::from(num) + u128::from(den) / 2) / u128::from(den);
    u64::try_from(wide).map_err(|_| TimeError::Overflow)
}

/// `value * num / den` rounded down, computed in 128 bits.
pub fn mul_div_floor(value: u64, num: u64, den: u64) -> Result<u64> {
    if den == 0 {
        return Err(TimeError::ZeroTimescale);
    }
    if let Some(p) = value.checked_mul(num) {
        return Ok(p / den);
    }
    let wide = u128::from(value) * u128::from(num) / u128::from(den);
    u64::try_from(wide).map_err(|_| TimeError::Overflow)
}

/// `value * num / den` rounded up, computed in 128 bits when 64 overflow.
pub fn mul_div_ceil(value: u64, num: u64, den: u64) -> Result<u64> {
    if den == 0 {
        return Err(TimeError::ZeroTimescale);
    }
    if let Some(p) = value.checked_mul(num) {
        return Ok(p.div_ceil(den));
    }
    let wide = (u128::from(value) * u128::from(num)).div_ceil(u128::from(den));
    u64::try_from(wide).map_err(|_| TimeError::Overflow)
}

/// Signed `value * num / den` rounded to nearest (ties away from zero).
pub fn mul_div_round_signed(value: i64, num: u64, den: u64) -> Result<i64> {
    let magnitude = mul_div_round(value.unsigned_abs(), num, den)?;
    let magnitude = i64::try_from(magnitude).map_err(|_| TimeError::Overflow)?;
    Ok(if value < 0 { -magnitude } else { magnitude })
}

/// Steps within this distance of 2^31 ms are read as a 31-bit wrap.
const WRAP_31_TOLERANCE_MS: u32 = 60_000;

/// Unwraps RTMP's 32-bit millisecond timestamps into a 64-bit timeline.
///
/// Each new value is taken as the nearest point to the previous one modulo
/// 2^32 (serial arithmetic): a step of less than 2^31 forward is forward,
/// otherwise backward. The first value is taken as is. A step within a
/// minute of 2^31 is taken as the 2^31 wrap of encoders (ffmpeg) that keep
/// only 31 bits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RtmpClock {
    last: Option<i64>,
}

impl RtmpClock {
    /// A clock with no value yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The unwrapped value of `ts`.
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        let value = match self.last {
            None => i64::from(ts),
            Some(last) => {
                // Difference modulo 2^32, read as a signed 32-bit step.
                let raw = ts.wrapping_sub(last as u32);
                // ffmpeg's FLV muxer masks the extended timestamp byte to 7
                // bits, so its clock wraps at 2^31 ms: a step of about 2^31
                // is that wrap, not a jump of 24 days.
                let from_31_bit_wrap = raw.wrapping_sub(1 << 31) as i32;
                let step = if from_31_bit_wrap.unsigned_abs() <= WRAP_31_TOLERANCE_MS {
                    from_31_bit_wrap
                } else {
                    raw as i32
                };
                last + i64::from(step)
            }
        };
        self.last = Some(value);
        value
    }

    /// The last unwrapped value.
    pub fn last(&self) -> Option<i64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_and_checks() {
        let ms = Timescale::MILLIS;
        let v = Timescale::MPEG;
        assert_eq!(Ticks(1001).rescale(ms, v), Ok(Ticks(90_090)));
        assert_eq!(Ticks(1).rescale(v, ms), Ok(Ticks(0)));
        assert_eq!(Ticks(45).rescale(v, ms), Ok(Ticks(1)));
        assert_eq!(Ticks(44).rescale_floor(v, ms), Ok(Ticks(0)));
        assert_eq!(
            Ticks(u64::MAX).rescale(ms, Timescale::HNS),
            Err(TimeError::Overflow)
        );
        assert_eq!(Timescale::new(0), Err(TimeError::ZeroTimescale));
        assert_eq!(mul_div_round_signed(-1001, 90, 1), Ok(-90_090));
    }

    #[test]
    fn fast_and_wide_paths_agree() {
        let wide = |v: u64, n: u64, d: u64, round: bool| {
            let r = (u128::from(v) * u128::from(n) + if round { u128::from(d) / 2 } else { 0 })
                / u128::from(d);
            u64::try_from(r).map_err(|_| TimeError::Overflow)
        };
        // Around the point where value * num leaves 64 bits, both ways.
        let edge = u64::MAX / 90_000;
        for v in [
            0,
            1,
            44,
            45,
            edge - 1,
            edge,
            edge + 1,
            u64::MAX / 2,
            u64::MAX,
        ] {
            for (n, d) in [(90_000, 1000), (1000, 90_000), (1, 3), (10_000_000, 48_000)] {
                assert_eq!(mul_div_round(v, n, d), wide(v, n, d, true), "{v}*{n}/{d}");
                assert_eq!(mul_div_floor(v, n, d), wide(v, n, d, false), "{v}*{n}/{d}");
                let ceil = u64::try_from((u128::from(v) * u128::from(n)).div_ceil(u128::from(d)))
                    .map_err(|_| TimeError::Overflow);
                assert_eq!(mul_div_ceil(v, n, d), ceil, "{v}*{n}/{d}");
            }
        }
        assert_eq!(mul_div_round(5, 1, u64::MAX), Ok(0));
        assert_eq!(mul_div_round(u64::MAX, 1, 1), Ok(u64::MAX));
    }

    #[test]
    fn rtmp_clock_unwraps_across_2_pow_32() {
        let mut c = RtmpClock::new();
        let near = u32::MAX - 1000;
        assert_eq!(c.unwrap(near), i64::from(near));
        // Wraps forward past 2^32.
        assert_eq!(c.unwrap(500), (1i64 << 32) + 500);
        assert_eq!(c.unwrap(1500), (1i64 << 32) + 1500);
        // A small step back stays near (reordering), not a full wrap.
        assert_eq!(c.unwrap(1400), (1i64 << 32) + 1400);
        // Stepping back across the wrap point returns below 2^32.
        assert_eq!(c.unwrap(u32::MAX), (1i64 << 32) - 1);
        // Several wraps in steps of 2^30.
        let mut c = RtmpClock::new();
        let mut expect = 0i64;
        c.unwrap(0);
        for _ in 0..12 {
            expect += 1 << 30;
            assert_eq!(c.unwrap(expect as u32), expect);
        }
        assert!(expect > 1 << 33);
    }

    #[test]
    fn rtmp_clock_reads_ffmpegs_31_bit_wrap() {
        let mut c = RtmpClock::new();
        let near = (1u32 << 31) - 40;
        assert_eq!(c.unwrap(near), i64::from(near));
        // ffmpeg wraps to 0 instead of writing 2^31.
        assert_eq!(c.unwrap(0), 1i64 << 31);
        assert_eq!(c.unwrap(40), (1i64 << 31) + 40);
        // Later genuine 32-bit wraps still unwrap.
        let mut c = RtmpClock::new();
        c.unwrap(u32::MAX - 10);
        assert_eq!(c.unwrap(30), (1i64 << 32) + 30);
    }
}
