//! Image verbs: `images`, `pull`, `rmi`, `imagefsinfo`.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_proto::v1::{
    AuthConfig, Image, ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest,
    ListContainersRequest, ListImagesRequest, ListImagesResponse, PullImageRequest,
    RemoveImageRequest,
};
use clap::Args;

use super::output::{self, Table};
use super::{config_file, list};
use crate::client::CriClient;
use crate::error::{Error, Result};

/// `berth images [IMAGE]`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only images matching this reference (repository or repository:tag).
    pub image: Option<String>,
    /// Only print image ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Show full ids and digests.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: String,
}

/// `berth pull IMAGE`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference.
    pub image: String,
    /// Registry credentials, `USERNAME[:PASSWORD]`.
    #[arg(long)]
    pub creds: Option<String>,
    /// Base64 of `USERNAME:PASSWORD`.
    #[arg(long)]
    pub auth: Option<String>,
    /// Registry username (with --password).
    #[arg(long)]
    pub username: Option<String>,
    /// Registry password (with --username).
    #[arg(long)]
    pub password: Option<String>,
    /// Pod sandbox config file the image is pulled for.
    #[arg(short = 'p', long)]
    pub pod_config: Option<PathBuf>,
}

/// `berth rmi ID...`.
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Image ids or references.
    pub ids: Vec<String>,
    /// Remove every image.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Remove every image not used by a container.
    #[arg(short = 'q', long)]
    pub prune: bool,
}

/// Splits `repo:tag` at the tag's colon (not a registry port's).
pub fn split_repo_tag(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "<none>"),
    }
}

/// Whether `image` is what the `images` filter argument names.
fn matches_filter(image: &Image, filter: &str) -> bool {
    image.id == filter
        || image.id.trim_start_matches("sha256:").starts_with(filter)
        || image.repo_tags.iter().any(|t| {
            let (repo, _) = split_repo_tag(t);
            t == filter || repo == filter
        })
        || image.repo_digests.iter().any(|d| d == filter)
}

/// `berth images`.
pub async fn list(cri: &mut CriClient, a: ImagesArgs) -> Result<()> {
    output::check_list_format(&a.output)?;
    let mut images = cri
        .image
        .list_images(ListImagesRequest {
            filter: a.image.as_ref().map(|i| ImageFilter {
                image: Some(ImageSpec {
                    image: i.clone(),
                    ..Default::default()
                }),
            }),
        })
        .await?
        .into_inner()
        .images;
    if let Some(f) = &a.image {
        images.retain(|i| matches_filter(i, f));
    }
    let doc = |images| output::to_value(&ListImagesResponse { images });
    let Some(images) = list::doc_or_ids(&a.output, a.quiet, images, |i| &i.id, doc)? else {
        return Ok(());
    };
    print!("{}", images_table(&images, a.digests, a.no_trunc).render());
    Ok(())
}

/// The `images` table: one row per repo tag, `<none>` for untagged images.
pub fn images_table(images: &[Image], digests: bool, no_trunc: bool) -> Table {
    let mut header = vec!["IMAGE", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "SIZE"]);
    let mut t = Table::new(&header);
    for image in images {
        let id = output::short_id(image.id.trim_start_matches("sha256:"), no_trunc);
        let size = output::human_size(image.size as f64, 3);
        let digest = image
            .repo_digests
            .first()
            .and_then(|d| d.rsplit_once('@'))
            .map(|(_, d)| output::short_id(d.trim_start_matches("sha256:"), no_trunc))
            .unwrap_or_else(|| "<none>".into());
        let mut names: Vec<(String, String)> = image
            .repo_tags
            .iter()
            .map(|t| {
                let (repo, tag) = split_repo_tag(t);
                (repo.to_string(), tag.to_string())
            })
            .collect();
        if names.is_empty() {
            let repo = image
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map(|(r, _)| r.to_string())
                .unwrap_or_else(|| "<none>".into());
            names.push((repo, "<none>".into()));
        }
        for (repo, tag) in names {
            let mut row = vec![repo, tag];
            if digests {
                row.push(digest.clone());
            }
            row.extend([id.clone(), size.clone()]);
            t.row(row);
        }
    }
    t
}

/// The AuthConfig for pull's credential flags.
fn auth_config(a: &PullArgs) -> Result<Option<AuthConfig>> {
    if let Some(auth) = &a.auth {
        return Ok(Some(AuthConfig {
            auth: auth.clone(),
            ..Default::default()
        }));
    }
    if let Some(creds) = &a.creds {
        let (user, pass) = creds.split_once(':').unwrap_or((creds.as_str(), ""));
        if user.is_empty() {
            return Err(Error::InvalidArgument(
                "creds: expected USERNAME[:PASSWORD]".into(),
            ));
        }
        return Ok(Some(AuthConfig {
            username: user.into(),
            password: pass.into(),
            ..Default::default()
        }));
    }
    match (&a.username, &a.password) {
        (Some(u), p) => Ok(Some(AuthConfig {
            username: u.clone(),
            password: p.clone().unwrap_or_default(),
            ..Default::default()
        })),
        (None, Some(_)) => Err(Error::InvalidArgument("password: needs --username".into())),
        (None, None) => Ok(None),
    }
}

/// `berth pull`.
pub async fn pull(cri: &mut CriClient, a: PullArgs) -> Result<()> {
    let sandbox_config = a
        .pod_config
        .as_deref()
        .map(config_file::load_pod_config)
        .transpose()?;
    let request = PullImageRequest {
        image: Some(ImageSpec {
            image: a.image.clone(),
            ..Default::default()
        }),
        auth: auth_config(&a)?,
        sandbox_config,
    };
    let mut client = cri.image.clone();
    let pulling = client.pull_image(request);
    let response = if std::io::stderr().is_terminal() {
        spin_while(&a.image, pulling).await
    } else {
        pulling.await
    };
    let image_ref = response?.into_inner().image_ref;
    println!("Image is up to date for {image_ref}");
    Ok(())
}

/// Awaits `fut`, showing a spinner with the elapsed time on stderr.
async fn spin_while<F: std::future::Future>(image: &str, fut: F) -> F::Output {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tokio::pin!(fut);
    let mut frame = 0;
    let out = loop {
        tokio::select! {
            out = &mut fut => break out,
            _ = tick.tick() => {
                eprint!(
                    "\r{} Pulling image {image} ({:.1}s)",
                    FRAMES[frame % FRAMES.len()],
                    start.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
                frame += 1;
            }
        }
    };
    // Clear the spinner line.
    eprint!("\r\x1b[2K");
    out
}

/// `berth rmi`.
pub async fn rmi(cri: &mut CriClient, a: RmiArgs) -> Result<()> {
    let targets: Vec<String> = if a.all || a.prune {
        let images = cri
            .image
            .list_images(ListImagesRequest { filter: None })
            .await?
            .into_inner()
            .images;
        let in_use: HashSet<String> = if a.prune {
            cri.runtime
                .list_containers(ListContainersRequest { filter: None })
                .await?
                .into_inner()
                .containers
                .into_iter()
                .flat_map(|c| [c.image_ref, c.image.map(|i| i.image).unwrap_or_default()])
                .collect()
        } else {
            HashSet::new()
        };
        images
            .into_iter()
            .filter(|i| !in_use.contains(&i.id) && !i.repo_tags.iter().any(|t| in_use.contains(t)))
            .map(|i| i.id)
            .collect()
    } else if a.ids.is_empty() {
        return Err(Error::InvalidArgument(
            "rmi: give at least one image id or reference, or -a/--prune".into(),
        ));
    } else {
        a.ids
    };
    for target in targets {
        let status = cri
            .image
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: target.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await?
            .into_inner();
        let Some(image) = status.image else {
            return Err(Error::NotFound(format!("no such image {target:?}")));
        };
        cri.image
            .remove_image(RemoveImageRequest {
                image: Some(ImageSpec {
                    image: image.id.clone(),
                    ..Default::default()
                }),
            })
            .await?;
        let names = if image.repo_tags.is_empty() {
            if image.repo_digests.is_empty() {
                vec![image.id.clone()]
            } else {
                image.repo_digests.clone()
            }
        } else {
            image.repo_tags.clone()
        };
        for name in names {
            println!("Deleted: {name}");
        }
    }
    Ok(())
}

/// `berth imagefsinfo`.
pub async fn fs_info(cri: &mut CriClient, format: &str) -> Result<()> {
    let info = cri
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await?
        .into_inner();
    output::print_doc(
        &serde_json::json!({"status": output::to_value(&info)?}),
        format,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_and_tag_split_at_the_tag_colon() {
        assert_eq!(
            split_repo_tag("127.0.0.1:5000/busybox:latest"),
            ("127.0.0.1:5000/busybox", "latest")
        );
        assert_eq!(
            split_repo_tag("127.0.0.1:5000/busybox"),
            ("127.0.0.1:5000/busybox", "<none>")
        );
        assert_eq!(split_repo_tag("busybox:1.36"), ("busybox", "1.36"));
    }

    #[test]
    fn images_table_one_row_per_tag() {
        let image = Image {
            id: format!("sha256:{}", "12".repeat(32)),
            repo_tags: vec!["r.io/a:1".into(), "r.io/a:2".into()],
            repo_digests: vec![format!("r.io/a@sha256:{}", "34".repeat(32))],
            size: 1_048_576,
            ..Default::default()
        };
        let untagged = Image {
            id: format!("sha256:{}", "56".repeat(32)),
            repo_digests: vec![format!("r.io/b@sha256:{}", "78".repeat(32))],
            size: 512,
            ..Default::default()
        };
        let out = images_table(&[image.clone(), untagged], false, false).render();
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]);
        assert_eq!(rows[1], ["r.io/a", "1", "1212121212121", "1.05MB"]);
        assert_eq!(rows[2], ["r.io/a", "2", "1212121212121", "1.05MB"]);
        assert_eq!(rows[3], ["r.io/b", "<none>", "5656565656565", "512B"]);
        let out = images_table(&[image], true, false).render();
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["IMAGE", "TAG", "DIGEST", "IMAGE", "ID", "SIZE"]);
        assert_eq!(
            rows[1],
            ["r.io/a", "1", "3434343434343", "1212121212121", "1.05MB"]
        );
    }

    #[test]
    fn pull_credentials() {
        let args = |creds: Option<&str>, auth: Option<&str>| PullArgs {
            image: "x".into(),
            creds: creds.map(Into::into),
            auth: auth.map(Into::into),
            username: None,
            password: None,
            pod_config: None,
        };
        let a = auth_config(&args(Some("u:p:q"), None)).unwrap().unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p:q"));
        let a = auth_config(&args(None, Some("dTpw"))).unwrap().unwrap();
        assert_eq!(a.auth, "dTpw");
        auth_config(&args(Some(":p"), None)).unwrap_err();
        assert!(auth_config(&args(None, None)).unwrap().is_none());
    }
}
