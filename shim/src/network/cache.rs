//! The on-disk record of each successful ADD: `<cache_dir>/<network>-<pod id>.json`
//! holds the result, the config list and the capability args used, so DEL and
//! CHECK get the same plugins, `prevResult` and `runtimeConfig` after berthd
//! restarts or the config dir changes. Written atomically (temp + fsync + rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

const KIND: &str = "berthCniCacheV1";

/// One cached ADD.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Format marker; other values are refused rather than misread.
    pub kind: String,
    /// `CNI_CONTAINERID` (the pod id).
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub if_name: String,
    /// The network name (`name` of the list).
    pub network_name: String,
    /// `CNI_ARGS`.
    pub cni_args: String,
    /// The capability args offered (`portMappings`, `bandwidth`, ...).
    pub capability_args: Map<String, Value>,
    /// The whole config list used for ADD.
    pub config: Value,
    /// The final ADD result.
    pub result: Value,
}

impl Entry {
    /// Builds an entry of the current format.
    pub fn new(
        container_id: &str,
        if_name: &str,
        network_name: &str,
        cni_args: &str,
        capability_args: Map<String, Value>,
        config: Value,
        result: Value,
    ) -> Entry {
        Entry {
            kind: KIND.into(),
            container_id: container_id.into(),
            if_name: if_name.into(),
            network_name: network_name.into(),
            cni_args: cni_args.into(),
            capability_args,
            config,
            result,
        }
    }
}

/// Path of the entry for `network` and `pod_id`.
pub fn path(dir: &Path, network: &str, pod_id: &str) -> PathBuf {
    dir.join(format!("{network}-{pod_id}.json"))
}

/// Writes `entry` atomically.
pub fn store(dir: &Path, entry: &Entry) -> Result<PathBuf> {
    crate::store::dirs::create_private(dir)?;
    let dest = path(dir, &entry.network_name, &entry.container_id);
    let bytes = serde_json::to_vec(entry)
        .map_err(|e| Error::Internal(format!("encode cni cache {}: {e}", dest.display())))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(Error::io("create cni cache temp file", dir))?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(Error::io("write cni cache", tmp.path().to_path_buf()))?;
    tmp.persist(&dest)
        .map_err(|e| Error::io("rename cni cache", dest.clone())(e.error))?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(dest)
}

/// Every entry for `pod_id`, whatever network it was made for (the config may
/// have changed since). Unreadable entries are an error: guessing could leak
/// an IP or tear down the wrong thing.
pub fn find(dir: &Path, pod_id: &str) -> Result<Vec<(PathBuf, Entry)>> {
    let suffix = format!("-{pod_id}.json");
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read cni cache dir", dir)(e)),
    };
    let mut found = Vec::new();
    for item in rd {
        let item = item.map_err(Error::io("read cni cache dir", dir))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(&suffix) {
            continue;
        }
        let p = item.path();
        let bytes = std::fs::read(&p).map_err(Error::io("read cni cache", p.clone()))?;
        let entry: Entry = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("cni cache {}: {e}", p.display())))?;
        if entry.kind != KIND {
            return Err(Error::Internal(format!(
                "cni cache {}: unknown kind {:?}",
                p.display(),
                entry.kind
            )));
        }
        // "<net>-<id>.json" could also be "<net-x>-<id>.json"; trust the content.
        if entry.container_id == pod_id && name == format!("{}{suffix}", entry.network_name) {
            found.push((p, entry));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Deletes an entry; a missing one is fine.
pub fn remove(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("remove cni cache", p)(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(net: &str, id: &str) -> Entry {
        Entry::new(
            id,
            "eth0",
            net,
            "IgnoreUnknown=1",
            Map::new(),
            json!({"name": net}),
            json!({"ips": []}),
        )
    }

    #[test]
    fn store_find_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        assert!(find(&cache, "p1").unwrap().is_empty());
        let p = store(&cache, &entry("net", "p1")).unwrap();
        assert_eq!(p, cache.join("net-p1.json"));
        store(&cache, &entry("net", "xp1")).unwrap();
        store(&cache, &entry("other-net", "p1")).unwrap();
        let found = find(&cache, "p1").unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].1, entry("net", "p1"));
        assert_eq!(found[1].1.network_name, "other-net");
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(find(&cache, "p1").unwrap().len(), 1);
        // Only the entry files remain: no temp files left behind.
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    }

    #[test]
    fn corrupt_entries_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n-p1.json"), "{").unwrap();
        let e = find(dir.path(), "p1").unwrap_err().to_string();
        assert!(e.contains("n-p1.json"), "{e}");
    }
}
