//! Values of the recorded run that differ in a replay: ids, image ids and
//! digests, pod IPs (learned from the two runs' answers as they come), host
//! paths and the cgroup root (fixed by the replay's own directories).
//!
//! A value is mapped only as a whole string (an id never matches inside a
//! longer one), or by a path prefix ending at a `/` boundary.

use std::collections::HashMap;

use serde_json::Value;

/// Recorded values and their counterparts in this replay.
#[derive(Debug, Default, Clone)]
pub struct Mapper {
    values: HashMap<String, String>,
    back: HashMap<String, String>,
    prefixes: Vec<(String, String)>,
}

impl Mapper {
    /// Maps every path under `recorded` (itself included) to `ours`.
    pub fn prefix(&mut self, recorded: &str, ours: &str) {
        self.prefixes.push((recorded.into(), ours.into()));
        // Longest first, so a nested prefix wins.
        self.prefixes
            .sort_by_key(|(r, _)| std::cmp::Reverse(r.len()));
    }

    /// Records that `recorded` is `ours` in this replay. A recorded value
    /// already mapped elsewhere, or two recorded values landing on one of
    /// ours, is an error: the runtime mixed two objects up.
    pub fn learn(&mut self, what: &str, recorded: &str, ours: &str) -> Result<(), String> {
        if recorded.is_empty() || ours.is_empty() {
            return Err(format!(
                "{what}: empty value (recorded {recorded:?}, ours {ours:?})"
            ));
        }
        if let Some(prev) = self.values.get(recorded) {
            if prev != ours {
                return Err(format!(
                    "{what}: recorded {recorded} was {prev} in this replay and is now {ours}"
                ));
            }
            return Ok(());
        }
        if let Some(prev) = self.back.get(ours) {
            if prev != recorded {
                return Err(format!(
                    "{what}: {ours} stands for both recorded {prev} and {recorded}"
                ));
            }
        }
        self.values.insert(recorded.into(), ours.into());
        self.back.insert(ours.into(), recorded.into());
        Ok(())
    }

    /// Our counterpart of a recorded value, if learned.
    pub fn ours(&self, recorded: &str) -> Option<&str> {
        self.values.get(recorded).map(String::as_str)
    }

    /// The recorded value a value of ours stands for, if learned.
    pub fn recorded(&self, ours: &str) -> Option<&str> {
        self.back.get(ours).map(String::as_str)
    }

    /// One string: whole-value map, then `name@digest` with a known digest,
    /// then path prefixes.
    pub fn map_str(&self, s: &str) -> String {
        if let Some(v) = self.values.get(s) {
            return v.clone();
        }
        if let Some((name, digest)) = s.split_once('@') {
            if let Some(d) = self.values.get(digest) {
                return format!("{name}@{d}");
            }
        }
        for (r, o) in &self.prefixes {
            if s == r {
                return o.clone();
            }
            if let Some(rest) = s.strip_prefix(r.as_str()) {
                if rest.starts_with('/') {
                    return format!("{o}{rest}");
                }
            }
        }
        s.to_string()
    }

    /// A whole message with every string (not keys) mapped.
    pub fn map(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.map_str(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.map(x)).collect()),
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, x)| (k.clone(), self.map(x))).collect())
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_whole_values_digests_and_prefixes_only() {
        let mut m = Mapper::default();
        m.prefix("/var/lib/kubelet", "/tmp/r/kubelet");
        m.learn("id", "abc", "xyz").unwrap();
        m.learn("digest", "sha256:11", "sha256:22").unwrap();
        let v = serde_json::json!({
            "id": "abc", "other": "abcd", "ref": "reg/x@sha256:11",
            "path": "/var/lib/kubelet/pods/u/etc-hosts", "near": "/var/lib/kubeletx",
            "list": ["abc", 3]
        });
        assert_eq!(
            m.map(&v),
            serde_json::json!({
                "id": "xyz", "other": "abcd", "ref": "reg/x@sha256:22",
                "path": "/tmp/r/kubelet/pods/u/etc-hosts", "near": "/var/lib/kubeletx",
                "list": ["xyz", 3]
            })
        );
        assert_eq!(m.recorded("xyz"), Some("abc"));
        m.learn("id", "abc", "other").unwrap_err();
        m.learn("id", "def", "xyz").unwrap_err();
        m.learn("id", "abc", "xyz").unwrap();
    }
}
