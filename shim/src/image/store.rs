//! Image records and snapshot references in `meta.redb`.
//!
//! `image_records`: image id → [`ImageRecord`]. A pull writes its record last,
//! in one transaction that also moves its tags off any older image, so an
//! image is either fully present (all blobs and snapshots on disk) or absent.
//! `snapshot_refs`: container id → the chain ids its rootfs stacks and those of
//! the image volumes mounted for it (see [`super::volume`]); written with the
//! mounts and deleted with them. Garbage collection keeps every blob and
//! snapshot that a record or a reference names.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::store::Store;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("image_records");
const REFS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot_refs");

/// The runtime part of an image's config (Docker/OCI `config` object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    /// `user`, `uid`, `user:group` or `uid:gid`.
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// `KEY=value` pairs.
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<String>,
    /// Entrypoint argv.
    #[serde(deserialize_with = "nullable")]
    pub entrypoint: Vec<String>,
    /// Default arguments.
    #[serde(deserialize_with = "nullable")]
    pub cmd: Vec<String>,
    /// Working directory.
    #[serde(deserialize_with = "nullable")]
    pub working_dir: String,
    /// Signal that stops the container, e.g. `SIGQUIT`.
    #[serde(deserialize_with = "nullable")]
    pub stop_signal: String,
    /// Image labels.
    #[serde(deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// `port/proto` → `{}`.
    #[serde(deserialize_with = "nullable")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// Volume paths → `{}`.
    #[serde(deserialize_with = "nullable")]
    pub volumes: BTreeMap<String, serde_json::Value>,
}

/// Registry JSON writes `null` for empty fields.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> std::result::Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One pulled image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<config digest hex>`.
    pub id: String,
    /// `registry/repo:tag` names.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:<manifest or index digest>` names.
    pub repo_digests: Vec<String>,
    /// Bytes of the platform manifest, config and compressed layers.
    pub size: u64,
    /// The runtime config.
    pub config: ImageConfig,
    /// Chain ids of its layers, bottom first.
    pub chain_ids: Vec<String>,
    /// Never garbage-collected by the kubelet (the sandbox image).
    pub pinned: bool,
    /// Every blob the image needs kept: index, manifest, config, layers.
    pub blobs: Vec<String>,
    /// Digest of the platform manifest.
    pub manifest_digest: String,
    /// `os/architecture[/variant]` of the config.
    pub platform: String,
    /// The config's `created` time (RFC 3339), if any.
    #[serde(default)]
    pub created: Option<String>,
    /// The full config blob as served, for verbose status.
    #[serde(default)]
    pub config_json: serde_json::Value,
}

/// What a container's rootfs and image volumes hold on to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The image it was prepared from.
    pub image_id: String,
    /// The snapshots stacked in its overlay.
    pub chain_ids: Vec<String>,
    /// Its mounted image volumes (absent in records of older berthds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeRef>,
}

/// One image volume of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRef {
    /// Index of the mount in the container's `mounts`.
    pub index: usize,
    /// The image mounted.
    pub image_id: String,
    /// Its snapshots, bottom first.
    pub chain_ids: Vec<String>,
}

fn decode<T: serde::de::DeserializeOwned>(table: &str, key: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| Error::Store(format!("{table}/{key}: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Store(e.to_string()))
}

/// Every image record.
pub fn records(store: &Store) -> Result<Vec<ImageRecord>> {
    Ok(store
        .list::<ImageRecord>("image_records")?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Stores `rec`, merging names with an existing record of the same id and
/// taking its tags away from any other image, in one transaction.
pub fn commit_record(store: &Store, rec: &ImageRecord) -> Result<ImageRecord> {
    let tx = store.db().begin_write()?;
    let merged;
    {
        let mut t = tx.open_table(RECORDS)?;
        let mut others: Vec<ImageRecord> = Vec::new();
        let mut existing: Option<ImageRecord> = None;
        for item in t.iter()? {
            let (k, v) = item?;
            let r: ImageRecord = decode("image_records", k.value(), v.value())?;
            if r.id == rec.id {
                existing = Some(r);
            } else if r.repo_tags.iter().any(|n| rec.repo_tags.contains(n)) {
                others.push(r);
            }
        }
        for mut o in others {
            o.repo_tags.retain(|n| !rec.repo_tags.contains(n));
            t.insert(o.id.as_str(), encode(&o)?.as_slice())?;
        }
        let mut m = rec.clone();
        if let Some(old) = existing {
            let tags: BTreeSet<_> = old.repo_tags.into_iter().chain(m.repo_tags).collect();
            let digests: BTreeSet<_> = old.repo_digests.into_iter().chain(m.repo_digests).collect();
            let blobs: BTreeSet<_> = old.blobs.into_iter().chain(m.blobs).collect();
            m.repo_tags = tags.into_iter().collect();
            m.repo_digests = digests.into_iter().collect();
            m.blobs = blobs.into_iter().collect();
            m.pinned |= old.pinned;
        }
        t.insert(m.id.as_str(), encode(&m)?.as_slice())?;
        merged = m;
    }
    tx.commit()?;
    Ok(merged)
}

/// Deletes an image record; returns whether it existed.
pub fn delete_record(store: &Store, id: &str) -> Result<bool> {
    store.delete("image_records", id)
}

/// Records that container `id` uses `r`.
pub fn put_ref(store: &Store, id: &str, r: &SnapshotRef) -> Result<()> {
    let tx = store.db().begin_write()?;
    {
        let mut t = tx.open_table(REFS)?;
        t.insert(id, encode(r)?.as_slice())?;
    }
    tx.commit()?;
    Ok(())
}

/// Drops container `id`'s reference.
pub fn delete_ref(store: &Store, id: &str) -> Result<bool> {
    store.delete("snapshot_refs", id)
}

/// The container's reference, if any.
pub fn get_ref(store: &Store, id: &str) -> Result<Option<SnapshotRef>> {
    store.get("snapshot_refs", id)
}

/// The first container (id, mount index) that mounts image `image_id` as an
/// image volume, if any.
pub fn volume_user(store: &Store, image_id: &str) -> Result<Option<(String, usize)>> {
    let refs: Vec<(String, SnapshotRef)> = store.list("snapshot_refs")?;
    Ok(refs.into_iter().find_map(|(cid, r)| {
        r.volumes
            .iter()
            .find(|v| v.image_id == image_id)
            .map(|v| (cid, v.index))
    }))
}

/// Blobs and snapshots that must be kept: named by a record or a container.
pub fn live_set(store: &Store) -> Result<LiveSet> {
    let tx = store.db().begin_read()?;
    let mut live = LiveSet::default();
    match tx.open_table(RECORDS) {
        Ok(t) => {
            for item in t.iter()? {
                let (k, v) = item?;
                let r: ImageRecord = decode("image_records", k.value(), v.value())?;
                live.blobs.extend(r.blobs);
                live.image_snapshots.extend(r.chain_ids);
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match tx.open_table(REFS) {
        Ok(t) => {
            for item in t.iter()? {
                let (k, v) = item?;
                let r: SnapshotRef = decode("snapshot_refs", k.value(), v.value())?;
                live.container_snapshots.extend(r.chain_ids);
                for v in r.volumes {
                    live.container_snapshots.extend(v.chain_ids);
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(live)
}

/// What garbage collection must keep.
#[derive(Debug, Default)]
pub struct LiveSet {
    /// Blobs of recorded images.
    pub blobs: BTreeSet<String>,
    /// Snapshots (chain ids) of recorded images.
    pub image_snapshots: BTreeSet<String>,
    /// Snapshots that containers' root filesystems and image volumes stack.
    pub container_snapshots: BTreeSet<String>,
}

impl LiveSet {
    /// True for a snapshot some image or container uses.
    pub fn keeps_snapshot(&self, chain_id: &str) -> bool {
        self.image_snapshots.contains(chain_id) || self.container_snapshots.contains(chain_id)
    }

    /// True when a container keeps a snapshot no image records any more (its
    /// image was removed while the container existed).
    pub fn has_orphans(&self) -> bool {
        !self.container_snapshots.is_subset(&self.image_snapshots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![],
            size: 1,
            config: ImageConfig::default(),
            chain_ids: vec![format!("chain-{id}")],
            pinned: false,
            blobs: vec![format!("blob-{id}")],
            manifest_digest: String::new(),
            platform: "linux/amd64".into(),
            created: None,
            config_json: serde_json::Value::Null,
        }
    }

    #[test]
    fn tag_moves_to_the_newer_image_and_names_merge() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("meta.redb")).unwrap();
        commit_record(&s, &rec("a", &["x:latest", "x:1"])).unwrap();
        commit_record(&s, &rec("b", &["x:latest"])).unwrap();
        let all = records(&s).unwrap();
        assert_eq!(all[0].repo_tags, ["x:1"]);
        assert_eq!(all[1].repo_tags, ["x:latest"]);
        let m = commit_record(&s, &rec("b", &["y:2"])).unwrap();
        assert_eq!(m.repo_tags, ["x:latest", "y:2"]);
        put_ref(
            &s,
            "c1",
            &SnapshotRef {
                image_id: "a".into(),
                chain_ids: vec!["chain-z".into()],
                volumes: vec![VolumeRef {
                    index: 2,
                    image_id: "v".into(),
                    chain_ids: vec!["chain-v".into()],
                }],
            },
        )
        .unwrap();
        let live = live_set(&s).unwrap();
        assert!(live.keeps_snapshot("chain-v"), "an image volume's snapshot");
        assert_eq!(volume_user(&s, "v").unwrap(), Some(("c1".into(), 2)));
        assert_eq!(volume_user(&s, "a").unwrap(), None);
        assert_eq!(live.blobs.iter().collect::<Vec<_>>(), ["blob-a", "blob-b"]);
        for chain in ["chain-a", "chain-b", "chain-z"] {
            assert!(live.keeps_snapshot(chain), "{chain}");
        }
        assert!(!live.keeps_snapshot("chain-y"));
        assert!(live.has_orphans(), "chain-z is only kept by c1");
    }

    #[test]
    fn docker_config_with_nulls_parses() {
        let c: ImageConfig = serde_json::from_str(
            r#"{"User":"","Env":["PATH=/bin"],"Cmd":["sh"],"Entrypoint":null,"Labels":null,"WorkingDir":"/w","ExposedPorts":{"80/tcp":{}},"OnBuild":null}"#,
        )
        .unwrap();
        assert_eq!(c.cmd, ["sh"]);
        assert!(c.entrypoint.is_empty() && c.labels.is_empty());
        assert_eq!(c.working_dir, "/w");
        assert!(c.exposed_ports.contains_key("80/tcp"));
    }
}
