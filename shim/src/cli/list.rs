//! What the list verbs (`pods`, `ps`, `images`, `stats`, `statsp`) share: the
//! filters crictl applies on the client after the runtime's own (name
//! regexes, newest first, `--last`/`--latest`), and the one way a list is
//! printed (`-o json|yaml` as the CRI response document, `-q` as ids, else the
//! verb's table). Each verb keeps only what is its own: its request filter,
//! its columns.

use regex::Regex;

use super::output;
use crate::error::{Error, Result};

/// A `--flag PATTERN` regular expression, compiled; None without the flag.
pub fn regex(flag: &str, pattern: Option<&str>) -> Result<Option<Regex>> {
    pattern
        .map(|p| {
            Regex::new(p)
                .map_err(|e| Error::InvalidArgument(format!("{flag}: bad regular expression: {e}")))
        })
        .transpose()
}

/// Whether `value` passes an optional `--flag PATTERN` filter.
pub fn matches(re: Option<&Regex>, value: &str) -> bool {
    re.is_none_or(|r| r.is_match(value))
}

/// Sorts `items` newest first and keeps the one `--latest` or the `--last N`.
pub fn newest_first<T>(
    items: &mut Vec<T>,
    created_at: impl Fn(&T) -> i64,
    latest: bool,
    last: Option<usize>,
) {
    items.sort_by_key(|i| std::cmp::Reverse(created_at(i)));
    if let Some(n) = if latest { Some(1) } else { last } {
        items.truncate(n);
    }
}

/// Prints `items` as `-o json|yaml` (the document `doc` makes of them) or, in
/// table format with `-q`, their ids one a line. Returns the items when the
/// caller is to print its table instead. `format` was checked by
/// [`output::check_list_format`] before the list was fetched.
pub fn doc_or_ids<T>(
    format: &str,
    quiet: bool,
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    doc: impl FnOnce(Vec<T>) -> Result<serde_json::Value>,
) -> Result<Option<Vec<T>>> {
    if format != "table" {
        output::print_doc(&doc(items)?, format)?;
        return Ok(None);
    }
    if quiet {
        for i in &items {
            println!("{}", id(i));
        }
        return Ok(None);
    }
    Ok(Some(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_keeps_latest_or_last() {
        let mut v = vec![1, 3, 2];
        newest_first(&mut v, |i| *i, false, None);
        assert_eq!(v, [3, 2, 1]);
        newest_first(&mut v, |i| *i, false, Some(2));
        assert_eq!(v, [3, 2]);
        newest_first(&mut v, |i| *i, true, Some(2));
        assert_eq!(v, [3]);
    }

    #[test]
    fn regex_names_its_flag() {
        let err = regex("namespace", Some("(")).unwrap_err().to_string();
        assert!(err.contains("namespace: bad regular expression"), "{err}");
        let re = regex("name", Some("^we")).unwrap();
        assert!(matches(re.as_ref(), "web"));
        assert!(!matches(re.as_ref(), "db"));
        assert!(matches(None, "anything"));
    }

    #[test]
    fn table_format_without_quiet_hands_the_items_back() {
        let doc = |_| -> Result<serde_json::Value> { panic!("no document for a table") };
        let back = doc_or_ids("table", false, vec!["a"], |s| s, doc).unwrap();
        assert_eq!(back, Some(vec!["a"]));
        let quiet = doc_or_ids("table", true, vec!["a"], |s| s, doc).unwrap();
        assert_eq!(quiet, None);
    }
}
