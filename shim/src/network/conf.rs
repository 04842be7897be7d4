//! Finding and parsing the network config: the lexicographically first usable
//! `*.conflist`, `*.conf` or `*.json` in the config dir, as libcni-based
//! runtimes pick it. A single-plugin `.conf` is wrapped into a one-plugin list,
//! so the rest of the module only deals with lists.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// CNI spec versions whose config and result shapes we understand.
const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A parsed network config list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    /// The network name (`name`); also part of cache file names.
    pub name: String,
    /// The list's `cniVersion`, given to every plugin.
    pub cni_version: String,
    /// `disableCheck`: CHECK is skipped for this network.
    pub disable_check: bool,
    /// Each plugin's own config object, in ADD order.
    pub plugins: Vec<Map<String, Value>>,
    /// The whole list as JSON, kept in the cache so DEL after a restart runs
    /// the plugins that ADD ran even if the config dir changed since.
    pub raw: Value,
}

impl NetworkList {
    /// Parses a list (`plugins` present) or a single-plugin config.
    pub fn parse(bytes: &[u8]) -> Result<NetworkList, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid json: {e}"))?;
        Self::from_value(value)
    }

    /// Like [`NetworkList::parse`] for already-decoded JSON.
    pub fn from_value(value: Value) -> Result<NetworkList, String> {
        let Value::Object(obj) = value else {
            return Err("not a json object".into());
        };
        let raw = if obj.contains_key("plugins") {
            Value::Object(obj)
        } else {
            wrap_single(obj)?
        };
        let obj = raw.as_object().expect("built as an object");
        let name = match obj.get("name") {
            Some(Value::String(n)) if valid_name(n) => n.clone(),
            Some(Value::String(n)) => {
                return Err(format!(
                    "name {n:?} must be letters, digits, '.', '_' or '-'"
                ))
            }
            _ => return Err("missing string field name".into()),
        };
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(v)) if SUPPORTED_VERSIONS.contains(&v.as_str()) => v.clone(),
            Some(Value::String(v)) => {
                return Err(format!(
                    "cniVersion {v:?} is not supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ))
            }
            _ => return Err("missing string field cniVersion".into()),
        };
        let disable_check = match obj.get("disableCheck") {
            None => false,
            Some(Value::Bool(b)) => *b,
            // Some configs in the wild write it as a string.
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            Some(other) => return Err(format!("disableCheck {other} is not a boolean")),
        };
        let Some(Value::Array(list)) = obj.get("plugins") else {
            return Err("plugins is not an array".into());
        };
        if list.is_empty() {
            return Err("plugins is empty".into());
        }
        let mut plugins = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            let Value::Object(p) = p else {
                return Err(format!("plugins[{i}] is not an object"));
            };
            match p.get("type") {
                Some(Value::String(t)) if valid_plugin_type(t) => {}
                Some(Value::String(t)) => {
                    return Err(format!("plugins[{i}].type {t:?} is not a plain file name"))
                }
                _ => return Err(format!("plugins[{i}] has no string field type")),
            }
            plugins.push(p.clone());
        }
        Ok(NetworkList {
            name,
            cni_version,
            disable_check,
            plugins,
            raw,
        })
    }

    /// True when the spec version passes `prevResult` to DEL and supports CHECK.
    pub fn at_least_0_4(&self) -> bool {
        !self.cni_version.starts_with("0.3.")
    }
}

/// Turns a single-plugin `.conf` into a one-plugin list: the plugin keeps every
/// key; the list takes its name and version.
fn wrap_single(obj: Map<String, Value>) -> Result<Value, String> {
    if !obj.contains_key("type") {
        return Err("neither a list (plugins) nor a plugin config (type)".into());
    }
    let mut list = Map::new();
    for key in ["cniVersion", "name"] {
        if let Some(v) = obj.get(key) {
            list.insert(key.into(), v.clone());
        }
    }
    list.insert("plugins".into(), Value::Array(vec![Value::Object(obj)]));
    Ok(Value::Object(list))
}

/// Network names end up in file names; keep them to a safe alphabet.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 200
        && n != "."
        && n != ".."
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A plugin type is a binary name looked up in the bin dirs, never a path.
fn valid_plugin_type(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0')
}

/// Config file candidates in `dir`, sorted by file name.
pub fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ext_ok = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("conflist" | "conf" | "json")
        );
        // Follow symlinks: operators (and Helm charts) often link configs in.
        if ext_ok
            && std::fs::metadata(&path)
                .map(|m| m.is_file())
                .unwrap_or(false)
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The outcome of looking at the config dir.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// The network to use and the file it came from.
    Ready(std::sync::Arc<NetworkList>, PathBuf),
    /// Why there is none, naming the dir (and each rejected file).
    NotReady(String),
}

/// Picks the first file in `dir` that parses; files that don't are skipped
/// and named in the not-ready message if none is usable.
pub fn load_dir(dir: &Path) -> Loaded {
    let files = match config_files(dir) {
        Ok(f) => f,
        Err(e) => return Loaded::NotReady(format!("cni config dir {}: {e}", dir.display())),
    };
    let mut rejected = Vec::new();
    for file in files {
        let parsed = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| NetworkList::parse(&b));
        match parsed {
            Ok(list) => return Loaded::Ready(std::sync::Arc::new(list), file),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "skipping cni config");
                rejected.push(format!("{}: {e}", file.display()));
            }
        }
    }
    let mut msg = format!("no network config found in {}", dir.display());
    if !rejected.is_empty() {
        msg.push_str(&format!(" (rejected: {})", rejected.join("; ")));
    }
    Loaded::NotReady(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_conf_is_wrapped_into_a_list() {
        let l = NetworkList::parse(
            br#"{"cniVersion":"0.3.1","name":"n1","type":"bridge","bridge":"cni0"}"#,
        )
        .unwrap();
        assert_eq!(l.name, "n1");
        assert_eq!(l.cni_version, "0.3.1");
        assert!(!l.at_least_0_4());
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugins[0]["bridge"], "cni0");
        assert_eq!(l.raw["plugins"][0]["type"], "bridge");
    }

    #[test]
    fn list_fields_are_read_and_bad_lists_rejected() {
        let l = NetworkList::parse(
            br#"{"cniVersion":"1.0.0","name":"k8s-pod-network","disableCheck":true,
                "plugins":[{"type":"calico"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        assert!(l.disable_check && l.at_least_0_4());
        assert_eq!(l.plugins[1]["type"], "portmap");

        for (bad, want) in [
            (&br#"[1]"#[..], "object"),
            (
                br#"{"cniVersion":"1.0.0","name":"a","plugins":[]}"#,
                "empty",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a","plugins":[{}]}"#,
                "type",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"../x"}]}"#,
                "plain file",
            ),
            (
                br#"{"cniVersion":"0.2.0","name":"a","type":"bridge"}"#,
                "not supported",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a/b","type":"bridge"}"#,
                "name",
            ),
            (br#"{"cniVersion":"1.0.0","type":"bridge"}"#, "name"),
            (br#"{"cniVersion":"1.0.0","name":"a"}"#, "neither"),
            (b"{", "invalid json"),
        ] {
            let err = NetworkList::parse(bad).unwrap_err();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn first_valid_file_by_name_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            matches!(load_dir(dir.path()), Loaded::NotReady(m) if m.contains(&dir.path().display().to_string()))
        );
        std::fs::write(dir.path().join("README"), "x").unwrap();
        std::fs::write(dir.path().join("05-broken.conflist"), "{").unwrap();
        std::fs::write(
            dir.path().join("20-b.conf"),
            r#"{"cniVersion":"1.0.0","name":"b","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        match load_dir(dir.path()) {
            Loaded::Ready(l, f) => {
                assert_eq!(l.name, "a");
                assert!(f.ends_with("10-a.conflist"));
            }
            Loaded::NotReady(m) => panic!("{m}"),
        }
        std::fs::remove_file(dir.path().join("10-a.conflist")).unwrap();
        std::fs::remove_file(dir.path().join("20-b.conf")).unwrap();
        match load_dir(dir.path()) {
            Loaded::NotReady(m) => assert!(m.contains("05-broken.conflist"), "{m}"),
            Loaded::Ready(..) => panic!("broken file accepted"),
        }
    }
}
