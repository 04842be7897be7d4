//! The matching rules shared by the List* RPCs.

use std::collections::HashMap;

/// An id filter matches the full id or any prefix of it; empty matches all.
pub fn id_matches(filter: &str, id: &str) -> bool {
    id.starts_with(filter)
}

/// Every selector pair must be present with the same value (CRI label selectors
/// are exact-match maps, not Kubernetes set-based selectors).
pub fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn id_filter_takes_prefixes_but_not_infixes() {
        assert!(id_matches("", "abc"));
        assert!(id_matches("ab", "abc"));
        assert!(id_matches("abc", "abc"));
        assert!(!id_matches("bc", "abc"));
        assert!(!id_matches("abcd", "abc"));
    }

    #[test]
    fn label_selector_needs_every_pair_with_equal_value() {
        let labels = map(&[("app", "web"), ("tier", "front")]);
        assert!(labels_match(&map(&[]), &labels));
        assert!(labels_match(&map(&[("app", "web")]), &labels));
        assert!(labels_match(
            &map(&[("app", "web"), ("tier", "front")]),
            &labels
        ));
        assert!(!labels_match(&map(&[("app", "db")]), &labels));
        assert!(!labels_match(&map(&[("app", "web"), ("x", "")]), &labels));
    }
}
