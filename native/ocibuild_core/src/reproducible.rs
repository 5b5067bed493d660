//! Timestamps for reproducible builds: what `SOURCE_DATE_EPOCH` means, and RFC 3339 times.
//!
//! The variable is read on the Erlang side (`ocibuild_reproducible`), which sees the VM's
//! environment as `os:putenv/2` left it, and its raw value is judged here, once
//! ([`source_date_epoch`]); layer mtimes and `created` times then come down as epoch seconds.

use crate::{Error, Result};

/// The value of `SOURCE_DATE_EPOCH` as the reproducible-builds specification reads it: unset
/// or blank is "not set" (`None`); otherwise decimal digits (surrounding whitespace ignored)
/// within 64 bits. Anything else (`-1`, `1e9`, `+5`, `12abc`) is an error naming the raw
/// value, since a mistyped epoch would silently make every build differ.
pub fn source_date_epoch(raw: Option<&str>) -> Result<Option<u64>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::InvalidSourceDateEpoch(raw.to_string());
    if !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    trimmed.parse::<u64>().map(Some).map_err(|_| invalid())
}

/// RFC 3339 UTC timestamp (`1970-01-01T00:00:00Z`) for an epoch second, as the OCI config wants.
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

// Howard Hinnant's days-to-civil algorithm: exact for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_values() {
        assert_eq!(source_date_epoch(None).unwrap(), None);
        assert_eq!(source_date_epoch(Some("")).unwrap(), None);
        assert_eq!(source_date_epoch(Some(" \t\n")).unwrap(), None);
        assert_eq!(source_date_epoch(Some("0")).unwrap(), Some(0));
        assert_eq!(
            source_date_epoch(Some(" 1700000000\n")).unwrap(),
            Some(1_700_000_000)
        );
        assert_eq!(
            source_date_epoch(Some("18446744073709551615")).unwrap(),
            Some(u64::MAX)
        );
        for bad in [
            "-1",
            "+5",
            "1e9",
            "12abc",
            "1.5",
            "soon",
            "18446744073709551616",
            "1 2",
        ] {
            match source_date_epoch(Some(bad)) {
                Err(Error::InvalidSourceDateEpoch(raw)) => assert_eq!(raw, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    proptest::proptest! {
        /// Any u64, written with any surrounding whitespace, reads back as itself.
        #[test]
        fn prop_source_date_epoch_reads_any_u64(n: u64, pad in "[ \t\n]{0,3}") {
            let raw = format!("{pad}{n}{pad}");
            proptest::prop_assert_eq!(source_date_epoch(Some(&raw)).unwrap(), Some(n));
        }
    }

    #[test]
    fn formats_known_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
