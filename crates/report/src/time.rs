//! UTC timestamps (microseconds since the Unix epoch) as ISO 8601 text and as the seed
//! notebook's file-name stamp, without a date-time dependency.

/// A calendar date and time of day in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

/// The UTC calendar time of `us` microseconds since 1970-01-01T00:00:00Z (proleptic
/// Gregorian calendar; negative values are before the epoch).
pub fn civil(us: i64) -> Civil {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a date (H. Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (sod / 3600) as u32,
        minute: (sod % 3600 / 60) as u32,
        second: (sod % 60) as u32,
        micros,
    }
}

/// ISO 8601 as Python's `datetime.isoformat()` writes an aware UTC time:
/// `2026-01-05T11:54:56.123456+00:00`, the fraction omitted when it is zero.
pub fn iso8601(us: i64) -> String {
    let c = civil(us);
    let frac = if c.micros == 0 {
        String::new()
    } else {
        format!(".{:06}", c.micros)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}+00:00",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `YYYYMMDD_HHMMSS`, the seed notebook's `strftime('%Y%m%d_%H%M%S')`.
pub fn file_stamp(us: i64) -> String {
    let c = civil(us);
    format!(
        "{:04}{:02}{:02}_{:02}{:02}{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Microseconds since the Unix epoch, now (the clock the dataset's timestamps use).
pub use attn_spectra::dataset::now_us;

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings from Python's datetime (`datetime(1970,1,1,tzinfo=timezone.utc) +
    /// timedelta(microseconds=us)`, `.isoformat()` and `.strftime('%Y%m%d_%H%M%S')`).
    #[test]
    fn matches_python_datetime() {
        for (us, iso, stamp) in [
            (0, "1970-01-01T00:00:00+00:00", "19700101_000000"),
            (
                1_767_614_096_123_456,
                "2026-01-05T11:54:56.123456+00:00",
                "20260105_115456",
            ),
            (
                951_782_400_000_000,
                "2000-02-29T00:00:00+00:00",
                "20000229_000000",
            ),
            (-1, "1969-12-31T23:59:59.999999+00:00", "19691231_235959"),
            (
                4_102_444_799_999_999,
                "2099-12-31T23:59:59.999999+00:00",
                "20991231_235959",
            ),
            (
                1_709_164_800_000_000,
                "2024-02-29T00:00:00+00:00",
                "20240229_000000",
            ),
        ] {
            assert_eq!(iso8601(us), iso, "{us}");
            assert_eq!(file_stamp(us), stamp, "{us}");
        }
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let _ = iso8601(i64::MIN);
        let _ = iso8601(i64::MAX);
    }
}
