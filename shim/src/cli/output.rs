//! Printing: aligned tables, JSON/YAML documents, and the human units crictl
//! shows (durations "N minutes ago", sizes in powers of 1000).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Ids are shown with this many characters unless `--no-trunc`.
pub const TRUNC_ID: usize = 13;

/// A table whose columns are padded like crictl's tabwriter: every column but
/// the last is at least 20 wide and at least 3 wider than its longest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with one header row.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table, each line ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let width = (widths[i] + 3).max(20);
                    let pad = width - cell.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Writes the table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// `id` cut to [`TRUNC_ID`] characters unless `no_trunc`.
pub fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(TRUNC_ID).collect()
    }
}

/// Go's `units.HumanDuration`, which crictl prints followed by " ago".
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let minutes = secs / 60;
    // Rounded to the nearest hour, as Go's does.
    let hours = (secs + 1800) / 3600;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// "N minutes ago" for a CRI timestamp in nanoseconds since the epoch.
pub fn ago(created_ns: i64, now: SystemTime) -> String {
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let elapsed = u64::try_from(now_ns.saturating_sub(created_ns)).unwrap_or(0);
    format!("{} ago", human_duration(Duration::from_nanos(elapsed)))
}

/// Go's `units.HumanSizeWithPrecision`: powers of 1000, `precision` significant
/// digits, trailing zeros dropped ("1.05MB", "4.1kB", "512B").
pub fn human_size(size: f64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = size;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(value, precision.max(1)), UNITS[unit])
}

/// `value` with `precision` significant digits, like Go's `%.Ng` for values in
/// [0, 1000).
fn significant(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".into();
    }
    // Values are in [0, 1000) (see human_size): the exponent is -324..=2, and
    // an f64 has at most 17 significant digits.
    #[allow(clippy::cast_possible_truncation)]
    let exponent = value.abs().log10().floor() as i64;
    let digits = i64::try_from(precision.min(17)).unwrap_or(17);
    let decimals = usize::try_from((digits - 1 - exponent).max(0)).unwrap_or(0);
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Prints `doc` as pretty JSON or YAML.
pub fn print_doc(doc: &serde_json::Value, format: &str) -> Result<()> {
    print!("{}", render_doc(doc, format)?);
    Ok(())
}

/// `doc` as pretty JSON (with a final newline) or YAML.
pub fn render_doc(doc: &serde_json::Value, format: &str) -> Result<String> {
    match format {
        "json" => Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(doc).map_err(|e| Error::Internal(e.to_string()))?
        )),
        "yaml" => serde_yaml::to_string(doc).map_err(|e| Error::Internal(e.to_string())),
        "go-template" => Err(Error::Unimplemented(
            "output: go-template is not supported by the berth cli; use json or yaml".into(),
        )),
        other => Err(Error::InvalidArgument(format!(
            "output: {other:?} is not one of json, yaml"
        ))),
    }
}

/// A protobuf message as a JSON value with the protobuf JSON mapping, every
/// field present (defaults included) as crictl prints it.
pub fn to_value<T: serde::Serialize>(msg: &T) -> Result<serde_json::Value> {
    let mut v =
        serde_json::to_value(msg).map_err(|e| Error::Internal(format!("encode json: {e}")))?;
    super::defaults::fill(&mut v, &super::defaults::type_name_of::<T>());
    Ok(v)
}

/// Checks a list verb's `-o`: table, json or yaml.
pub fn check_list_format(format: &str) -> Result<()> {
    match format {
        "table" | "json" | "yaml" => Ok(()),
        "go-template" => Err(Error::Unimplemented(
            "output: go-template is not supported by the berth cli; use table, json or yaml".into(),
        )),
        other => Err(Error::InvalidArgument(format!(
            "output: {other:?} is not one of table, json, yaml"
        ))),
    }
}

/// A rendered table's header names and the cells of each row (columns are
/// separated by at least two blanks in the header, three in rows whose cells
/// may contain single blanks such as "2 hours ago").
#[cfg(test)]
pub fn table_cells(rendered: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
    fn split<'a>(line: &'a str, sep: &str) -> Vec<&'a str> {
        line.split(sep)
            .filter(|s| !s.is_empty())
            .map(str::trim)
            .collect()
    }
    let mut lines = rendered.lines();
    let header = lines.next().map(|l| split(l, "  ")).unwrap_or_default();
    (header, lines.map(|l| split(l, "   ")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns_like_tabwriter() {
        let mut t = Table::new(&["POD ID", "CREATED", "STATE"]);
        t.row(vec![
            "abc".into(),
            "a-very-long-created-cell".into(),
            "SANDBOX_READY".into(),
        ]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        // First column: minimum width 20.
        assert_eq!(&lines[0][..20], "POD ID              ");
        assert_eq!(&lines[1][..20], "abc                 ");
        // Second column: longest cell (24) + 3 padding.
        assert_eq!(lines[0].find("STATE"), Some(20 + 27));
        assert_eq!(lines[1].find("SANDBOX_READY"), Some(20 + 27));
        // No trailing blanks.
        assert!(out.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn ids_truncate_to_13() {
        let id = "0123456789abcdef0123";
        assert_eq!(short_id(id, false), "0123456789abc");
        assert_eq!(short_id(id, true), id);
        assert_eq!(short_id("abc", false), "abc");
    }

    #[test]
    fn human_durations_match_go_units() {
        let d = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(d(1)), "1 second");
        assert_eq!(human_duration(d(42)), "42 seconds");
        assert_eq!(human_duration(d(61)), "About a minute");
        assert_eq!(human_duration(d(5 * 60 + 10)), "5 minutes");
        assert_eq!(human_duration(d(3600 + 60)), "About an hour");
        assert_eq!(human_duration(d(5 * 3600)), "5 hours");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
        assert_eq!(human_duration(d(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(d(90 * 86400)), "3 months");
        assert_eq!(human_duration(d(800 * 86400)), "2 years");
        let now = UNIX_EPOCH + d(1000);
        assert_eq!(ago(990 * 1_000_000_000, now), "10 seconds ago");
        // A clock skewed into the future does not underflow.
        assert_eq!(ago(2000 * 1_000_000_000, now), "Less than a second ago");
    }

    #[test]
    fn human_sizes_are_base_1000() {
        assert_eq!(human_size(0.0, 3), "0B");
        assert_eq!(human_size(512.0, 3), "512B");
        assert_eq!(human_size(1_048_576.0, 3), "1.05MB");
        assert_eq!(human_size(4_100.0, 3), "4.1kB");
        assert_eq!(human_size(2_000_000_000.0, 3), "2GB");
        assert_eq!(human_size(1_048_576.0, 4), "1.049MB");
        assert_eq!(human_size(123_456_789.0, 3), "123MB");
    }

    #[test]
    fn documents_render_or_reject_the_format() {
        let doc = serde_json::json!({"a": 1});
        assert_eq!(render_doc(&doc, "json").unwrap(), "{\n  \"a\": 1\n}\n");
        assert_eq!(render_doc(&doc, "yaml").unwrap(), "a: 1\n");
        assert!(render_doc(&doc, "go-template")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        render_doc(&doc, "xml").unwrap_err();
    }
}
