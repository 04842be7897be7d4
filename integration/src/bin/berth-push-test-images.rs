//! berth-push-test-images: builds the test images from Debian's busybox-static
//! (the same ones the tests use) and pushes them to a registry, for the quick
//! start and for trying Berth by hand without any registry on the internet.

use anyhow::Context;
use berth_integration::{push, test_images};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "berth-push-test-images",
    about = "Push Berth's busybox-static test images to a registry"
)]
struct Args {
    /// Registry host:port (plain HTTP), e.g. 127.0.0.1:5000.
    #[arg(long)]
    registry: String,
    /// Repository prefix; `library` makes `busybox` resolve as Docker Hub's would.
    #[arg(long, default_value = "library")]
    prefix: String,
    /// Images to push: busybox, configured, layered, multiarch, pause, large.
    #[arg(long, value_delimiter = ',', default_value = "busybox")]
    images: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for name in &args.images {
        let repo = if args.prefix.is_empty() {
            name.clone()
        } else {
            format!("{}/{name}", args.prefix)
        };
        let pushed = match name.as_str() {
            "multiarch" => {
                push::push_index(&args.registry, &repo, "latest", test_images::multiarch()?).await
            }
            other => {
                let image = match other {
                    "busybox" => test_images::busybox()?,
                    "configured" => test_images::configured()?,
                    "layered" => test_images::layered()?,
                    "pause" => test_images::pause()?,
                    "large" => test_images::large()?,
                    _ => anyhow::bail!("unknown image {other:?}"),
                };
                push::push_image(&args.registry, &repo, "latest", image).await
            }
        };
        let digest = pushed.with_context(|| format!("push {repo}"))?;
        println!("{}/{repo}:latest@{digest}", args.registry);
    }
    Ok(())
}
