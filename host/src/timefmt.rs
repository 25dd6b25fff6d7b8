//! Times and durations as the API and the config write them: ISO 8601
//! durations (archive windows) and RFC 3339 times (locators, epochs).

/// An ISO 8601 duration of days and time (`P1D`, `PT1H30M`, `PT90.5S`), in
/// milliseconds. Years, months and weeks have no fixed length and are
/// refused; so are signs, empty parts and anything longer than 64 bytes.
/// Written by hand: the grammar is small and a parser of hostile input
/// must be bounded (checked arithmetic, no allocation).
pub fn parse_iso_duration_ms(s: &str) -> Result<u64, String> {
    if s.len() > 64 {
        return Err("too long".into());
    }
    let rest = s
        .strip_prefix('P')
        .ok_or("an ISO 8601 duration starts with P (e.g. PT1H)")?;
    let mut total: u64 = 0;
    let mut in_time = false;
    let mut any = false;
    let mut last_rank = 0u8;
    let mut chars = rest.bytes().peekable();
    while let Some(&c) = chars.peek() {
        if c == b'T' {
            if in_time {
                return Err("T appears twice".into());
            }
            in_time = true;
            chars.next();
            if chars.peek().is_none() {
                return Err("nothing after T".into());
            }
            continue;
        }
        let mut whole: u64 = 0;
        let mut digits = 0;
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u64::from(d - b'0')))
                .ok_or("number too large")?;
            digits += 1;
            chars.next();
        }
        let mut frac_ms: u64 = 0;
        if matches!(chars.peek(), Some(b'.' | b',')) {
            chars.next();
            let mut scale = 100;
            let mut fdigits = 0;
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                frac_ms += u64::from(d - b'0') * scale;
                scale /= 10;
                fdigits += 1;
                chars.next();
            }
            if fdigits == 0 {
                return Err("no digits after the decimal sign".into());
            }
        }
        if digits == 0 {
            return Err("a number must precede each designator".into());
        }
        let designator = chars.next().ok_or("a number without a designator")?;
        let (rank, unit_ms) = match (in_time, designator) {
            (false, b'D') => (1, 86_400_000),
            (true, b'H') => (2, 3_600_000),
            (true, b'M') => (3, 60_000),
            (true, b'S') => (4, 1000),
            (false, b'Y' | b'M' | b'W') => {
                return Err(
                    "years, months and weeks have no fixed length: use days or time".into(),
                );
            }
            (false, b'H' | b'S') => return Err("hours, minutes and seconds follow T".into()),
            _ => return Err(format!("unexpected {:?}", char::from(designator))),
        };
        if rank <= last_rank {
            return Err("designators out of order or repeated".into());
        }
        if frac_ms != 0 && rank != 4 {
            return Err("only seconds may have a fraction".into());
        }
        last_rank = rank;
        any = true;
        total = whole
            .checked_mul(unit_ms)
            .and_then(|v| v.checked_add(frac_ms))
            .and_then(|v| v.checked_add(total))
            .ok_or("duration too long")?;
    }
    if !any {
        return Err("no duration given".into());
    }
    Ok(total)
}

/// Milliseconds as an ISO 8601 duration (`PT1H30M`, `PT25H`, `PT0.5S`).
pub fn format_iso_duration(ms: u64) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let mut out = String::from("PT");
    if h > 0 {
        out += &format!("{h}H");
    }
    if m > 0 {
        out += &format!("{m}M");
    }
    if frac > 0 {
        out += &format!("{s}.{frac:03}S");
    } else if s > 0 || out.len() == 2 {
        out += &format!("{s}S");
    }
    out
}

/// An RFC 3339 time (an offset is required), as Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    if s.len() > 64 {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        let ok = |s: &str| parse_iso_duration_ms(s).expect(s);
        assert_eq!(ok("PT5M"), 300_000);
        assert_eq!(ok("PT25H"), 90_000_000);
        assert_eq!(ok("P1DT1H"), 90_000_000);
        assert_eq!(ok("PT1H30M15.5S"), 5_415_500);
        assert_eq!(ok("PT0.25S"), 250);
        for bad in [
            "",
            "P",
            "PT",
            "5m",
            "pt5m",
            "PT5",
            "PT-5M",
            "P1M",
            "P1Y",
            "P1W",
            "PT5M1H",
            "PT5M5M",
            "PT1.5H",
            "P5H",
            "PTT5M",
            "PT.5S",
            "PT5.S",
            "PT99999999999999999999H",
            "PT5M ",
        ] {
            assert!(parse_iso_duration_ms(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_iso_duration_ms(&"P".repeat(100)).is_err());
        for ms in [300_000, 90_000_000, 5_415_500, 250, 0, 3_600_000] {
            assert_eq!(ok(&format_iso_duration(ms)), ms);
        }
        assert_eq!(format_iso_duration(3_600_000), "PT1H");
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:01.5+01:00"), Some(1500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01"), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
