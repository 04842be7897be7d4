//! Unix nanoseconds as RFC 3339 text, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC,
//! nine fraction digits). Core only: the steady-state monitor, which has no
//! standard library, stamps every log record with it.

/// Length of the formatted text.
pub const LEN: usize = 30;

/// Formats `nanos` (since the unix epoch) into a fixed-size buffer.
pub fn format(nanos: i64) -> [u8; LEN] {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000).unsigned_abs();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400).unsigned_abs();
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut out[0..4], y.clamp(0, 9999).unsigned_abs());
    digits(&mut out[5..7], m);
    digits(&mut out[8..10], d);
    digits(&mut out[11..13], sod / 3600);
    digits(&mut out[14..16], (sod / 60) % 60);
    digits(&mut out[17..19], sod % 60);
    digits(&mut out[20..29], frac);
    out
}

/// Writes `v` as decimal digits right-aligned in `out`, zero padded.
fn digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        // A digit: 0..=9 fits.
        *b = b'0' + u8::try_from(v % 10).unwrap_or(0);
        v /= 10;
    }
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Day 1..=31 and month 1..=12: positive, so their magnitude is the value.
    let d = (doy - (153 * mp + 2) / 5 + 1).unsigned_abs();
    let m = if mp < 10 { mp + 3 } else { mp - 9 }.unsigned_abs();
    (if m <= 2 { y + 1 } else { y }, m, d)
}
