//! Image volumes in a CreateContainer request (`Mount.image`, Kubernetes'
//! `volumes[].image`): which mounts ask for one, checked before anything is
//! made, and how a mounted one enters the OCI spec.
//!
//! The kubelet pulls the image first and names it by what PullImage answered
//! (Berth's image id); a name or digest that resolves locally works too (crictl).
//! The image service mounts it (see `crate::image::volume`); the spec then
//! gets a read-only bind mount of that directory, or of the resolved
//! `image_sub_path` below it, at `container_path`, which `berth-monitor` makes
//! like any other bind mount. The container record keeps the request's mount
//! (no host path) with `image.image_ref` set to the image it got, which is
//! what ContainerStatus reports.
//!
//! Read-only is forced whatever `readonly` says (the kubelet always sets it;
//! containerd refuses `false`, we simply never mount writable). The CRI has
//! no noexec knob for mounts, so none is added. User namespaces: in a pod
//! with its own user namespace the bind carries the mount's
//! `uid_mappings`/`gid_mappings` like any other mount; whether an id-mapped
//! bind of the volume (an overlay or a bind of a snapshot) is right, or the
//! mappings belong on the snapshot layers as for the rootfs, is for the user
//! namespace work to settle.

use std::path::{Component, Path};

use berth_proto::v1::{ContainerConfig, Mount as CriMount, MountPropagation};

use crate::error::{Error, Result};
use crate::image::volume::{MountedVolume, VolumeRequest};
use crate::image::ImageRecord;

fn field(i: usize, f: &str) -> String {
    format!("config.mounts[{i}].{f}")
}

/// The image a mount names (`image.image`, else `image.image_ref`), if it is
/// an image volume.
fn image_name(m: &CriMount) -> Option<&str> {
    let spec = m.image.as_ref()?;
    [spec.image.trim(), spec.image_ref.trim()]
        .into_iter()
        .find(|s| !s.is_empty())
}

/// Checks `image_sub_path`: relative, no `..`, no NUL. Symlinks are the
/// kernel's to resolve inside the image, at mount time.
fn check_sub_path(i: usize, sub: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "{}: {sub:?} {why}",
            field(i, "image_sub_path")
        )))
    };
    if sub.contains('\0') {
        return bad("contains NUL");
    }
    let p = Path::new(sub);
    if p.is_absolute() {
        return bad("must be relative to the image's root");
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return bad("must not contain '..'");
    }
    Ok(())
}

/// The image volumes `config` asks for, each checked and resolved to a
/// pulled image through `resolve` (the image service's lookup); sets each
/// one's `image.image_ref` in `config` to the image it got. Touches nothing
/// on disk.
pub fn plan(
    config: &mut ContainerConfig,
    resolve: impl Fn(&str) -> Result<Option<ImageRecord>>,
) -> Result<Vec<VolumeRequest>> {
    let mut out = Vec::new();
    for (i, m) in config.mounts.iter_mut().enumerate() {
        if m.image.is_none() {
            if !m.image_sub_path.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "{}: set without an image",
                    field(i, "image_sub_path")
                )));
            }
            continue;
        }
        let Some(name) = image_name(m).map(str::to_string) else {
            return Err(Error::InvalidArgument(format!(
                "{}: empty image reference",
                field(i, "image.image")
            )));
        };
        if !m.host_path.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{}: must be empty for an image volume (image {name:?})",
                field(i, "host_path")
            )));
        }
        if m.propagation == MountPropagation::PropagationBidirectional as i32 {
            return Err(Error::InvalidArgument(format!(
                "{}: an image volume is read-only and cannot propagate mounts back",
                field(i, "propagation")
            )));
        }
        check_sub_path(i, &m.image_sub_path)?;
        let rec = resolve(&name)?.ok_or_else(|| {
            Error::NotFound(format!(
                "{}: image {name:?} not found; pull it first",
                field(i, "image.image")
            ))
        })?;
        if let Some(spec) = m.image.as_mut() {
            // As the container's own image_ref: the repo digest, else the id.
            spec.image_ref = rec
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| rec.id.clone());
        }
        out.push(VolumeRequest {
            index: i,
            image_id: rec.id,
            sub_path: m.image_sub_path.clone(),
        });
    }
    Ok(out)
}

/// `config` as the OCI spec is made from it: each mounted image volume
/// becomes a plain read-only bind mount of its source.
pub fn bind_sources(mut config: ContainerConfig, mounted: &[MountedVolume]) -> ContainerConfig {
    for v in mounted {
        if let Some(m) = config.mounts.get_mut(v.index) {
            m.host_path = v.source.to_string_lossy().into_owned();
            m.readonly = true;
            m.image = None;
            m.image_sub_path.clear();
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::ImageSpec;

    fn image(id: &str) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            repo_tags: vec!["reg/vol:1".into()],
            repo_digests: vec![format!("reg/vol@sha256:{}", "d".repeat(64))],
            size: 1,
            config: Default::default(),
            chain_ids: vec![],
            pinned: false,
            blobs: vec![],
            manifest_digest: String::new(),
            platform: "linux/amd64".into(),
            created: None,
            config_json: serde_json::Value::Null,
        }
    }

    fn vol(image: &str, sub: &str) -> CriMount {
        CriMount {
            container_path: "/vol".into(),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            image_sub_path: sub.into(),
            readonly: true,
            ..Default::default()
        }
    }

    fn lookup(name: &str) -> Result<Option<ImageRecord>> {
        Ok((name == "reg/vol:1" || name == "sha256:abc").then(|| image("sha256:abc")))
    }

    #[test]
    fn plan_resolves_image_volumes_and_records_what_they_got() {
        let host = CriMount {
            container_path: "/data".into(),
            host_path: "/tmp".into(),
            ..Default::default()
        };
        let mut c = ContainerConfig {
            mounts: vec![
                host.clone(),
                vol("reg/vol:1", "a/./b"),
                vol("sha256:abc", ""),
            ],
            ..Default::default()
        };
        let plan = plan(&mut c, lookup).unwrap();
        assert_eq!(
            plan,
            [
                VolumeRequest {
                    index: 1,
                    image_id: "sha256:abc".into(),
                    sub_path: "a/./b".into()
                },
                VolumeRequest {
                    index: 2,
                    image_id: "sha256:abc".into(),
                    sub_path: String::new()
                },
            ]
        );
        assert_eq!(c.mounts[0], host);
        let want = format!("reg/vol@sha256:{}", "d".repeat(64));
        for m in &c.mounts[1..] {
            assert_eq!(m.image.as_ref().unwrap().image_ref, want);
            assert!(m.host_path.is_empty());
        }

        let bound = bind_sources(
            c,
            &[MountedVolume {
                index: 1,
                source: "/r/containers/x/volumes/1/a/b".into(),
            }],
        );
        let m = &bound.mounts[1];
        assert_eq!(m.host_path, "/r/containers/x/volumes/1/a/b");
        assert!(m.readonly && m.image.is_none() && m.image_sub_path.is_empty());
    }

    #[test]
    fn plan_refuses_bad_image_volumes_naming_the_field() {
        let mut rw = vol("reg/vol:1", "");
        rw.host_path = "/etc".into();
        let mut bidi = vol("reg/vol:1", "");
        bidi.propagation = MountPropagation::PropagationBidirectional as i32;
        let mut sub_only = vol("", "x");
        sub_only.image = None;
        let cases = [
            (vol("", ""), "config.mounts[0].image.image", "empty"),
            (
                vol("reg/other:1", ""),
                "config.mounts[0].image.image",
                "pull",
            ),
            (rw, "config.mounts[0].host_path", "empty"),
            (bidi, "config.mounts[0].propagation", "read-only"),
            (vol("reg/vol:1", "/etc"), "image_sub_path", "relative"),
            (vol("reg/vol:1", "a/../../b"), "image_sub_path", "'..'"),
            (vol("reg/vol:1", ".."), "image_sub_path", "'..'"),
            (vol("reg/vol:1", "a\0b"), "image_sub_path", "NUL"),
            (sub_only, "image_sub_path", "without an image"),
        ];
        for (m, want_field, want_why) in cases {
            let mut c = ContainerConfig {
                mounts: vec![m.clone()],
                ..Default::default()
            };
            let e = plan(&mut c, lookup).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(want_field) && msg.contains(want_why),
                "{m:?}: {msg}"
            );
            let code = if want_why == "pull" {
                matches!(e, Error::NotFound(_))
            } else {
                matches!(e, Error::InvalidArgument(_))
            };
            assert!(code, "{m:?}: {e:?}");
        }
    }
}
