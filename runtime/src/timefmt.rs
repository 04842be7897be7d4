//! Wall-clock time as unix nanoseconds and RFC 3339 text, without a date crate
//! (the monitor stays small).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the unix epoch.
pub fn now_nanos() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        // i64 nanoseconds last until 2262.
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Formats unix nanoseconds as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC, nine digits).
pub fn rfc3339_nanos(nanos: i64) -> String {
    let text = crate::monitor::rfc3339::format(nanos);
    String::from_utf8_lossy(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.000000789Z, a leap day.
        assert_eq!(
            rfc3339_nanos(1_709_210_096 * 1_000_000_000 + 789),
            "2024-02-29T12:34:56.000000789Z"
        );
        assert_eq!(
            rfc3339_nanos(4_102_444_799 * 1_000_000_000 + 999_999_999),
            "2099-12-31T23:59:59.999999999Z"
        );
    }
}
