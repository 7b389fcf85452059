//! A second-resolution UTC timestamp, printed as RFC 3339.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time with second resolution (OpenPGP's resolution), in UTC.
///
/// Displays and serialises as RFC 3339 (`2024-05-01T12:00:00Z`), so it can be
/// printed to operators and emitted in `--json` output as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The timestamp `secs` seconds after the Unix epoch.
    pub const fn from_unix(secs: u64) -> Self {
        Timestamp(secs)
    }

    /// RFC 2822 in UTC (`Tue, 14 Nov 2023 22:13:20 UTC`): the form of the
    /// dates in apt's `Release`, which pipe signs alongside its own files.
    pub fn to_rfc2822(self) -> String {
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        // 1970-01-01 was a Thursday.
        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        #[allow(
            clippy::indexing_slicing,
            reason = "days is non-negative (a u64 divided), so days % 7 is below WEEKDAYS' length 7"
        )]
        let weekday = WEEKDAYS[(days % 7) as usize];
        #[allow(
            clippy::indexing_slicing,
            reason = "civil_from_days returns m in 1..=12 (mp is 0..=11), so m - 1 is below MONTHS' length 12"
        )]
        let month = MONTHS[(m - 1) as usize];
        format!(
            "{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} UTC",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }

    /// The same instant as a [`SystemTime`].
    pub(crate) fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0)
    }
}

impl From<SystemTime> for Timestamp {
    /// Truncates to whole seconds; instants before 1970 become the epoch.
    fn from(t: SystemTime) -> Self {
        Timestamp(
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
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
    use super::Timestamp;

    #[test]
    fn rfc2822() {
        assert_eq!(
            Timestamp::from_unix(0).to_rfc2822(),
            "Thu, 01 Jan 1970 00:00:00 UTC"
        );
        assert_eq!(
            Timestamp::from_unix(1_700_000_000).to_rfc2822(),
            "Tue, 14 Nov 2023 22:13:20 UTC"
        );
    }

    #[test]
    fn rfc3339() {
        assert_eq!(Timestamp::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_unix(1_700_000_000).to_string(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            Timestamp::from_unix(951_782_400).to_string(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            Timestamp::from_unix(4_102_444_799).to_string(),
            "2099-12-31T23:59:59Z"
        );
    }
}
