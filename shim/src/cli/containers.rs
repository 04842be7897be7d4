//! Container verbs: `ps`, `create`, `run`, `start`, `stop`, `rm`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use berth_proto::v1::{
    Container, ContainerFilter, ContainerState, ContainerStateValue, CreateContainerRequest,
    ImageSpec, ImageStatusRequest, ListContainersRequest, ListContainersResponse,
    ListPodSandboxRequest, PodSandboxConfig, PullImageRequest, RemoveContainerRequest,
    StartContainerRequest, StopContainerRequest,
};
use clap::Args;

use super::output::{self, Table};
use super::pods::with_id;
use super::{config_file, list, parse_labels};
use crate::client::CriClient;
use crate::error::{Error, Result};

/// `berth ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only print container ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Only containers of this pod sandbox id.
    #[arg(short = 'p', long)]
    pub pod: Option<String>,
    /// Only containers whose name matches this regular expression.
    #[arg(long)]
    pub name: Option<String>,
    /// Only containers in this state: created, running, exited, unknown.
    #[arg(short = 's', long)]
    pub state: Option<String>,
    /// Only containers with this label (key=value), repeatable.
    #[arg(long)]
    pub label: Vec<String>,
    /// Only the container with this id (or unique prefix).
    #[arg(long)]
    pub id: Option<String>,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: String,
    /// Show full ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only containers of this image (name or id).
    #[arg(long)]
    pub image: Option<String>,
    /// Only the N most recently created containers.
    #[arg(short = 'n', long)]
    pub last: Option<usize>,
    /// Only the most recently created container.
    #[arg(short = 'l', long)]
    pub latest: bool,
}

/// `berth create POD_ID CONTAINER_CONFIG POD_CONFIG`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Pod sandbox id.
    pub pod_id: String,
    /// Container config file (JSON or YAML).
    pub container_config: PathBuf,
    /// Pod sandbox config file (JSON or YAML).
    pub pod_config: PathBuf,
    /// Do not pull the image when it is missing.
    #[arg(long)]
    pub no_pull: bool,
}

/// `berth run CONTAINER_CONFIG POD_CONFIG`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Container config file (JSON or YAML).
    pub container_config: PathBuf,
    /// Pod sandbox config file (JSON or YAML).
    pub pod_config: PathBuf,
    /// Runtime handler.
    #[arg(long = "runtime", default_value = "")]
    pub runtime: String,
    /// Do not pull the image when it is missing.
    #[arg(long)]
    pub no_pull: bool,
}

/// `berth start ID...`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Container ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `berth stop ID...`.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Container ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Seconds to wait for a graceful stop before killing.
    #[arg(short = 't', long, default_value_t = 0)]
    pub timeout: i64,
}

/// `berth rm ID...`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Container ids.
    pub ids: Vec<String>,
    /// Stop running containers first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove every container.
    #[arg(short = 'a', long)]
    pub all: bool,
}

/// crictl's short spelling of a container state.
pub fn state_name(state: i32) -> &'static str {
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => "Created",
        Ok(ContainerState::ContainerRunning) => "Running",
        Ok(ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

fn parse_state(s: &str) -> Result<ContainerState> {
    match s.to_ascii_lowercase().trim_start_matches("container_") {
        "created" => Ok(ContainerState::ContainerCreated),
        "running" => Ok(ContainerState::ContainerRunning),
        "exited" => Ok(ContainerState::ContainerExited),
        "unknown" => Ok(ContainerState::ContainerUnknown),
        _ => Err(Error::InvalidArgument(format!(
            "state: {s:?} is not one of created, running, exited, unknown"
        ))),
    }
}

/// Lists containers with crictl's filters, newest first.
pub async fn list_containers(cri: &mut CriClient, a: &PsArgs) -> Result<Vec<Container>> {
    let state = match (&a.state, a.all) {
        (Some(s), _) => Some(parse_state(s)?),
        (None, false) => Some(ContainerState::ContainerRunning),
        (None, true) => None,
    };
    let filter = ContainerFilter {
        id: a.id.clone().unwrap_or_default(),
        state: state.map(|s| ContainerStateValue { state: s as i32 }),
        pod_sandbox_id: a.pod.clone().unwrap_or_default(),
        label_selector: parse_labels(&a.label)?,
    };
    let name = list::regex("name", a.name.as_deref())?;
    let image_id = match &a.image {
        Some(image) => Some(image_id(cri, image).await?),
        None => None,
    };
    let mut containers = cri
        .runtime
        .list_containers(ListContainersRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner()
        .containers;
    containers.retain(|c| {
        let n = c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
        let name_ok = list::matches(name.as_ref(), n);
        let image_ok = match (&a.image, &image_id) {
            (Some(wanted), Some(id)) => {
                let spec = c.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
                spec == wanted || spec == id || c.image_ref == *id
            }
            _ => true,
        };
        name_ok && image_ok
    });
    list::newest_first(&mut containers, |c| c.created_at, a.latest, a.last);
    Ok(containers)
}

/// The image id for a name or id, or the input when the daemon does not know it.
async fn image_id(cri: &mut CriClient, image: &str) -> Result<String> {
    let status = cri
        .image
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await?
        .into_inner();
    Ok(status
        .image
        .map(|i| i.id)
        .unwrap_or_else(|| image.to_string()))
}

/// `berth ps`.
pub async fn ps(cri: &mut CriClient, a: PsArgs) -> Result<()> {
    output::check_list_format(&a.output)?;
    let containers = list_containers(cri, &a).await?;
    let doc = |containers| output::to_value(&ListContainersResponse { containers });
    let Some(containers) = list::doc_or_ids(&a.output, a.quiet, containers, |c| &c.id, doc)? else {
        return Ok(());
    };
    let pod_names: HashMap<String, String> = cri
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items
        .into_iter()
        .map(|p| (p.id, p.metadata.map(|m| m.name).unwrap_or_default()))
        .collect();
    print!(
        "{}",
        ps_table(&containers, &pod_names, a.no_trunc, SystemTime::now()).render()
    );
    Ok(())
}

/// The `ps` table.
pub fn ps_table(
    containers: &[Container],
    pod_names: &HashMap<String, String>,
    no_trunc: bool,
    now: SystemTime,
) -> Table {
    let mut t = Table::new(&[
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD ID",
        "POD",
    ]);
    for c in containers {
        let m = c.metadata.clone().unwrap_or_default();
        let mut image = c
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if let Some(hex) = image.strip_prefix("sha256:") {
            if !no_trunc {
                image = output::short_id(hex, false);
            }
        }
        t.row(vec![
            output::short_id(&c.id, no_trunc),
            image,
            output::ago(c.created_at, now),
            state_name(c.state).into(),
            m.name,
            m.attempt.to_string(),
            output::short_id(&c.pod_sandbox_id, no_trunc),
            pod_names
                .get(&c.pod_sandbox_id)
                .cloned()
                .unwrap_or_default(),
        ]);
    }
    t
}

/// Creates a container from config files, pulling its image if missing.
async fn create_container(
    cri: &mut CriClient,
    pod_id: &str,
    container_config: &std::path::Path,
    pod_config: PodSandboxConfig,
    no_pull: bool,
) -> Result<String> {
    let config = config_file::load_container_config(container_config)?;
    let image = config.image.clone().unwrap_or_default();
    if image.image.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "config file {}: image.image is empty",
            container_config.display()
        )));
    }
    if !no_pull {
        let present = cri
            .image
            .image_status(ImageStatusRequest {
                image: Some(image.clone()),
                verbose: false,
            })
            .await?
            .into_inner()
            .image
            .is_some();
        if !present {
            cri.image
                .pull_image(PullImageRequest {
                    image: Some(image),
                    auth: None,
                    sandbox_config: Some(pod_config.clone()),
                })
                .await?;
        }
    }
    Ok(cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        })
        .await?
        .into_inner()
        .container_id)
}

/// `berth create`.
pub async fn create(cri: &mut CriClient, a: CreateArgs) -> Result<()> {
    let pod_config = config_file::load_pod_config(&a.pod_config)?;
    let id = create_container(cri, &a.pod_id, &a.container_config, pod_config, a.no_pull).await?;
    println!("{id}");
    Ok(())
}

/// `berth run`: runp + create + start.
pub async fn run(cri: &mut CriClient, a: RunArgs) -> Result<()> {
    let pod_config = config_file::load_pod_config(&a.pod_config)?;
    // Parse the container config before creating anything, so a typo leaves
    // no pod behind.
    config_file::load_container_config(&a.container_config)?;
    let pod_id = super::pods::run_pod(cri, &a.pod_config, &a.runtime).await?;
    let id = create_container(cri, &pod_id, &a.container_config, pod_config, a.no_pull).await?;
    start_one(cri, &id).await?;
    println!("{id}");
    Ok(())
}

async fn start_one(cri: &mut CriClient, id: &str) -> Result<()> {
    cri.runtime
        .start_container(StartContainerRequest {
            container_id: id.to_string(),
        })
        .await
        .map_err(|e| with_id("start container", id, e))?;
    Ok(())
}

/// `berth start`.
pub async fn start(cri: &mut CriClient, a: StartArgs) -> Result<()> {
    for id in a.ids {
        start_one(cri, &id).await?;
        println!("{id}");
    }
    Ok(())
}

/// `berth stop`.
pub async fn stop(cri: &mut CriClient, a: StopArgs) -> Result<()> {
    for id in a.ids {
        stop_one(cri, &id, a.timeout).await?;
        println!("{id}");
    }
    Ok(())
}

async fn stop_one(cri: &mut CriClient, id: &str, timeout: i64) -> Result<()> {
    cri.runtime
        .stop_container(StopContainerRequest {
            container_id: id.to_string(),
            timeout,
        })
        .await
        .map_err(|e| with_id("stop container", id, e))?;
    Ok(())
}

/// `berth rm`.
pub async fn rm(cri: &mut CriClient, a: RmArgs) -> Result<()> {
    let ids: Vec<String> = if a.all {
        cri.runtime
            .list_containers(ListContainersRequest { filter: None })
            .await?
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect()
    } else if a.ids.is_empty() {
        return Err(Error::InvalidArgument(
            "rm: give at least one container id, or -a".into(),
        ));
    } else {
        a.ids
    };
    for id in ids {
        let running = cri
            .runtime
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    id: id.clone(),
                    state: Some(ContainerStateValue {
                        state: ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .containers;
        if !running.is_empty() {
            if !a.force {
                return Err(Error::FailedPrecondition(format!(
                    "container {id} is running; stop it first or use -f"
                )));
            }
            stop_one(cri, &id, 0).await?;
        }
        cri.runtime
            .remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(|e| with_id("remove container", &id, e))?;
        println!("{id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::ContainerMetadata;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn ps_table_has_crictl_columns() {
        let now = UNIX_EPOCH + Duration::from_secs(7200);
        let pod_id = "ab".repeat(32);
        let c = Container {
            id: "cd".repeat(32),
            pod_sandbox_id: pod_id.clone(),
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: format!("sha256:{}", "ef".repeat(32)),
                ..Default::default()
            }),
            state: ContainerState::ContainerExited as i32,
            created_at: 0,
            ..Default::default()
        };
        let names = HashMap::from([(pod_id, "web".to_string())]);
        let out = ps_table(&[c], &names, false, now).render();
        let (header, rows) = crate::cli::output::table_cells(&out);
        assert_eq!(
            header,
            [
                "CONTAINER",
                "IMAGE",
                "CREATED",
                "STATE",
                "NAME",
                "ATTEMPT",
                "POD ID",
                "POD"
            ]
        );
        assert_eq!(
            rows[0],
            [
                "cdcdcdcdcdcdc",
                "efefefefefefe",
                "2 hours ago",
                "Exited",
                "app",
                "0",
                "ababababababa",
                "web"
            ]
        );
    }

    #[test]
    fn container_states_parse() {
        assert_eq!(
            parse_state("Running").unwrap(),
            ContainerState::ContainerRunning
        );
        assert_eq!(
            parse_state("CONTAINER_EXITED").unwrap(),
            ContainerState::ContainerExited
        );
        parse_state("ready").unwrap_err();
        assert_eq!(
            state_name(ContainerState::ContainerCreated as i32),
            "Created"
        );
        assert_eq!(state_name(99), "Unknown");
    }
}
