//! When a credential stops working, as the protocol wants it: **Unix seconds** (`expires_at`
//! of [`OnboardStep::Done`](crate::OnboardStep) and [`RefreshOutcome::Renewed`](crate::RefreshOutcome)).
//! Providers say it in many ways; these read each one.
//!
//! ```
//! use authplug_sdk::expiry;
//!
//! // `expires_in: 3600`
//! assert!(expiry::after(3600) > expiry::now());
//! // A time with its offset needs no zone.
//! assert_eq!(expiry::parse("2026-12-01T10:00:00Z", "UTC").unwrap(), 1_796_119_200);
//! assert_eq!(expiry::parse("2026-12-01T11:00:00+01:00", "UTC").unwrap(), 1_796_119_200);
//! // A local time is read in the provider's zone (IANA names need the SDK's `tz` feature).
//! assert_eq!(expiry::parse("2026-12-01 12:00:00", "+02:00").unwrap(), 1_796_119_200);
//! // A date a session is valid through ends at the next midnight there.
//! assert_eq!(expiry::end_of_day("2026-11-30", "UTC").unwrap(), 1_796_083_200);
//! ```
//!
//! Zones are `UTC`, a fixed offset (`+01:00`, `-0500`), or with the `tz` feature any IANA name
//! (`Europe/Oslo`), daylight saving included. Without the feature an IANA name is an error that
//! says so, never a silent UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};

use crate::{Error, ErrorCode};

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `seconds` from now: for `expires_in`.
pub fn after(seconds: i64) -> i64 {
    now().saturating_add(seconds)
}

/// A point in time as a provider writes it: Unix seconds (`1796119200`), RFC 3339 / ISO 8601
/// with an offset (`2026-12-01T10:00:00Z`), or a local time without one (`2026-12-01T11:00:00`,
/// `2026-12-01 11:00:00.250`), read in `zone`.
pub fn parse(text: &str, zone: &str) -> Result<i64, Error> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        if text.len() > 11 {
            return Err(Error::new(
                ErrorCode::Provider,
                format!("the provider's expiry {text} looks like milliseconds: divide it by 1000"),
            ));
        }
        return text.parse().map_err(|_| unreadable(text));
    }
    // With an offset: RFC 3339 (`Z`, `+01:00`) or ISO 8601's basic offset (`+0100`).
    let offset = DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"));
    if let Ok(at) = offset {
        return Ok(at.timestamp());
    }
    let local = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .ok_or_else(|| unreadable(text))?;
    in_zone(local, zone)
}

/// The end of the day `date` (`2026-11-30`) in `zone`: the next midnight there, for a
/// credential valid through that date.
pub fn end_of_day(date: &str, zone: &str) -> Result<i64, Error> {
    let day = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").map_err(|_| unreadable(date))?;
    let next = day.succ_opt().ok_or_else(|| unreadable(date))?;
    in_zone(next.and_hms_opt(0, 0, 0).ok_or_else(|| unreadable(date))?, zone)
}

/// The date (`2026-12-01`) in `zone` at the instant `at` (Unix seconds): for providers that
/// take a validity date in their own calendar.
pub fn local_date(at: i64, zone: &str) -> Result<String, Error> {
    let utc = DateTime::from_timestamp(at, 0)
        .ok_or_else(|| Error::new(ErrorCode::InvalidInput, format!("{at} is out of range")))?;
    let naive = utc.naive_utc();
    let offset = if zone.eq_ignore_ascii_case("utc") || zone == "Z" {
        0
    } else if let Some(offset) = fixed_offset(zone) {
        offset.local_minus_utc() as i64
    } else {
        offset_at(naive, zone)?
    };
    Ok((naive + chrono::Duration::seconds(offset)).date().to_string())
}

fn unreadable(text: &str) -> Error {
    Error::new(
        ErrorCode::Provider,
        format!(
            "the provider's expiry {text:?} is not a time authplug reads (Unix seconds, ISO 8601)"
        ),
    )
}

/// A local time in `zone`, as Unix seconds. In a daylight-saving overlap the earlier instant;
/// in a gap, an error.
fn in_zone(local: NaiveDateTime, zone: &str) -> Result<i64, Error> {
    let missing = || {
        Error::new(
            ErrorCode::Provider,
            format!("{local} does not exist in {zone} (a daylight-saving gap)"),
        )
    };
    if zone.eq_ignore_ascii_case("utc") || zone == "Z" {
        return Ok(local.and_utc().timestamp());
    }
    if let Some(offset) = fixed_offset(zone) {
        return offset
            .from_local_datetime(&local)
            .earliest()
            .map(|t| t.timestamp())
            .ok_or_else(missing);
    }
    named(local, zone)?.ok_or_else(missing)
}

/// `+01:00`, `-0500`, `+01`.
fn fixed_offset(zone: &str) -> Option<FixedOffset> {
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = if digits.len() == 4 { digits[2..].parse().ok()? } else { 0 };
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

#[cfg(feature = "tz")]
fn iana(zone: &str) -> Result<chrono_tz::Tz, Error> {
    zone.parse().map_err(|_| {
        Error::new(ErrorCode::InvalidInput, format!("time zone {zone:?} is not an IANA zone name"))
    })
}

#[cfg(feature = "tz")]
fn named(local: NaiveDateTime, zone: &str) -> Result<Option<i64>, Error> {
    Ok(iana(zone)?.from_local_datetime(&local).earliest().map(|t| t.timestamp()))
}

/// The offset (seconds east of UTC) of the IANA `zone` at the UTC time `utc`.
#[cfg(feature = "tz")]
fn offset_at(utc: NaiveDateTime, zone: &str) -> Result<i64, Error> {
    use chrono::Offset as _;
    let tz = iana(zone)?;
    Ok(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc() as i64)
}

#[cfg(not(feature = "tz"))]
fn offset_at(_: NaiveDateTime, zone: &str) -> Result<i64, Error> {
    named(NaiveDateTime::default(), zone).map(|_| 0)
}

#[cfg(not(feature = "tz"))]
fn named(_: NaiveDateTime, zone: &str) -> Result<Option<i64>, Error> {
    Err(Error::new(
        ErrorCode::InvalidInput,
        format!(
            "time zone {zone:?}: IANA zone names need authplug-sdk's `tz` feature (or give UTC or an offset such as +01:00)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_offsets_and_local_times_are_read() {
        assert_eq!(parse("1796119200", "UTC").unwrap(), 1_796_119_200);
        assert_eq!(parse("2026-12-01T10:00:00.5Z", "Europe/Oslo").unwrap(), 1_796_119_200);
        assert_eq!(parse("2026-12-01T10:00:00", "UTC").unwrap(), 1_796_119_200);
        assert_eq!(parse("2026-12-01T05:00", "-0500").unwrap(), 1_796_119_200);
        assert_eq!(parse("2026-12-01 11:00:00", "+01").unwrap(), 1_796_119_200);
        assert_eq!(parse("2026-12-01T11:00:00+0100", "UTC").unwrap(), 1_796_119_200);
        assert!(parse("1796119200000", "UTC").unwrap_err().message.contains("milliseconds"));
        assert!(parse("2026-12-01 11:00:00", "+0199").is_err(), "no minute 99");
        for bad in ["", "tomorrow", "2026-13-01T00:00:00", "12:00"] {
            assert_eq!(parse(bad, "UTC").unwrap_err().code, ErrorCode::Provider, "{bad:?}");
        }
        assert!(end_of_day("30.11.2026", "UTC").is_err());
        assert_eq!(local_date(1_796_081_400, "+01:00").unwrap(), "2026-12-01");
    }

    #[cfg(feature = "tz")]
    #[test]
    fn iana_zones_know_daylight_saving() {
        // Oslo is UTC+1 in winter and UTC+2 in summer.
        assert_eq!(parse("2026-12-01 11:00:00", "Europe/Oslo").unwrap(), 1_796_119_200);
        assert_eq!(parse("2026-07-01 12:00:00", "Europe/Oslo").unwrap(), 1_782_900_000);
        assert_eq!(end_of_day("2026-11-30", "Europe/Oslo").unwrap(), 1_796_079_600);
        // 23:30 UTC on 30 November is already 1 December in Oslo.
        assert_eq!(local_date(1_796_081_400, "Europe/Oslo").unwrap(), "2026-12-01");
        assert_eq!(local_date(1_796_081_400, "UTC").unwrap(), "2026-11-30");
        // 02:30 on the last Sunday of March does not exist there.
        assert!(parse("2026-03-29 02:30:00", "Europe/Oslo").is_err());
        assert_eq!(
            parse("2026-01-01 00:00:00", "Mars/Olympus").unwrap_err().code,
            ErrorCode::InvalidInput
        );
    }

    #[cfg(not(feature = "tz"))]
    #[test]
    fn without_the_feature_an_iana_zone_says_so() {
        let error = parse("2026-12-01 11:00:00", "Europe/Oslo").unwrap_err();
        assert!(error.message.contains("`tz` feature"), "{}", error.message);
    }
}
