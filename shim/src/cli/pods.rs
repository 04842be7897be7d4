//! Pod sandbox verbs: `pods`, `runp`, `stopp`, `rmp`.

use std::path::PathBuf;
use std::time::SystemTime;

use berth_proto::v1::{
    ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox, PodSandboxFilter, PodSandboxState,
    PodSandboxStateValue, RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
};
use clap::Args;

use super::output::{self, Table};
use super::{config_file, list, parse_labels};
use crate::client::CriClient;
use crate::error::{Error, Result};

/// `berth pods`.
#[derive(Args, Debug)]
pub struct PodsArgs {
    /// Only the pod with this id (or unique id prefix).
    #[arg(long)]
    pub id: Option<String>,
    /// Only pods whose name matches this regular expression.
    #[arg(long)]
    pub name: Option<String>,
    /// Only pods whose namespace matches this regular expression.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only pods in this state: ready or notready.
    #[arg(short = 's', long)]
    pub state: Option<String>,
    /// Only pods with this label (key=value), repeatable.
    #[arg(long)]
    pub label: Vec<String>,
    /// Only print pod ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: String,
    /// Show full ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only the N most recently created pods.
    #[arg(short = 'n', long)]
    pub last: Option<usize>,
    /// Only the most recently created pod.
    #[arg(short = 'l', long)]
    pub latest: bool,
}

/// `berth runp POD_CONFIG`.
#[derive(Args, Debug)]
pub struct RunpArgs {
    /// Pod sandbox config file (JSON or YAML).
    pub config: PathBuf,
    /// Runtime handler.
    #[arg(long = "runtime", default_value = "")]
    pub runtime: String,
}

/// `berth stopp ID...`.
#[derive(Args, Debug)]
pub struct StoppArgs {
    /// Pod sandbox ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `berth rmp ID...`.
#[derive(Args, Debug)]
pub struct RmpArgs {
    /// Pod sandbox ids.
    pub ids: Vec<String>,
    /// Stop the pods first if they are running.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove every pod sandbox.
    #[arg(short = 'a', long)]
    pub all: bool,
}

/// crictl's short spelling of a pod state.
pub fn state_name(state: i32) -> &'static str {
    match PodSandboxState::try_from(state) {
        Ok(PodSandboxState::SandboxReady) => "Ready",
        Ok(PodSandboxState::SandboxNotready) => "NotReady",
        Err(_) => "Unknown",
    }
}

fn parse_state(s: &str) -> Result<PodSandboxState> {
    match s.to_ascii_lowercase().as_str() {
        "ready" | "sandbox_ready" => Ok(PodSandboxState::SandboxReady),
        "notready" | "sandbox_notready" => Ok(PodSandboxState::SandboxNotready),
        _ => Err(Error::InvalidArgument(format!(
            "state: {s:?} is not one of ready, notready"
        ))),
    }
}

/// Lists pods with crictl's filters applied, newest first.
pub async fn list_pods(cri: &mut CriClient, a: &PodsArgs) -> Result<Vec<PodSandbox>> {
    let filter = PodSandboxFilter {
        id: a.id.clone().unwrap_or_default(),
        state: a
            .state
            .as_deref()
            .map(parse_state)
            .transpose()?
            .map(|s| PodSandboxStateValue { state: s as i32 }),
        label_selector: parse_labels(&a.label)?,
    };
    let name = list::regex("name", a.name.as_deref())?;
    let namespace = list::regex("namespace", a.namespace.as_deref())?;
    let mut pods = cri
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner()
        .items;
    pods.retain(|p| {
        let m = p.metadata.clone().unwrap_or_default();
        list::matches(name.as_ref(), &m.name) && list::matches(namespace.as_ref(), &m.namespace)
    });
    list::newest_first(&mut pods, |p| p.created_at, a.latest, a.last);
    Ok(pods)
}

/// `berth pods`.
pub async fn list(cri: &mut CriClient, a: PodsArgs) -> Result<()> {
    output::check_list_format(&a.output)?;
    let pods = list_pods(cri, &a).await?;
    let doc = |items| output::to_value(&ListPodSandboxResponse { items });
    let Some(pods) = list::doc_or_ids(&a.output, a.quiet, pods, |p| &p.id, doc)? else {
        return Ok(());
    };
    print!(
        "{}",
        pods_table(&pods, a.no_trunc, SystemTime::now()).render()
    );
    Ok(())
}

/// The `pods` table.
pub fn pods_table(pods: &[PodSandbox], no_trunc: bool, now: SystemTime) -> Table {
    let mut t = Table::new(&[
        "POD ID",
        "CREATED",
        "STATE",
        "NAME",
        "NAMESPACE",
        "ATTEMPT",
        "RUNTIME",
    ]);
    for p in pods {
        let m = p.metadata.clone().unwrap_or_default();
        let runtime = if p.runtime_handler.is_empty() {
            "(default)".to_string()
        } else {
            p.runtime_handler.clone()
        };
        t.row(vec![
            output::short_id(&p.id, no_trunc),
            output::ago(p.created_at, now),
            state_name(p.state).into(),
            m.name,
            m.namespace,
            m.attempt.to_string(),
            runtime,
        ]);
    }
    t
}

/// Runs a pod from a config file; returns its id.
pub async fn run_pod(
    cri: &mut CriClient,
    config: &std::path::Path,
    runtime: &str,
) -> Result<String> {
    let config = config_file::load_pod_config(config)?;
    Ok(cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime.to_string(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id)
}

/// `berth runp`.
pub async fn runp(cri: &mut CriClient, a: RunpArgs) -> Result<()> {
    println!("{}", run_pod(cri, &a.config, &a.runtime).await?);
    Ok(())
}

/// `berth stopp`.
pub async fn stopp(cri: &mut CriClient, a: StoppArgs) -> Result<()> {
    for id in a.ids {
        cri.runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .map_err(|e| with_id("stop pod sandbox", &id, e))?;
        println!("Stopped sandbox {id}");
    }
    Ok(())
}

/// `berth rmp`.
pub async fn rmp(cri: &mut CriClient, a: RmpArgs) -> Result<()> {
    let ids = if a.all {
        let all = PodsArgs {
            id: None,
            name: None,
            namespace: None,
            state: None,
            label: Vec::new(),
            quiet: true,
            output: "table".into(),
            no_trunc: true,
            last: None,
            latest: false,
        };
        list_pods(cri, &all)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect()
    } else if a.ids.is_empty() {
        return Err(Error::InvalidArgument(
            "rmp: give at least one pod sandbox id, or -a".into(),
        ));
    } else {
        a.ids
    };
    for id in ids {
        if !a.force {
            let ready = cri
                .runtime
                .list_pod_sandbox(ListPodSandboxRequest {
                    filter: Some(PodSandboxFilter {
                        id: id.clone(),
                        state: Some(PodSandboxStateValue {
                            state: PodSandboxState::SandboxReady as i32,
                        }),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .items;
            if !ready.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "pod sandbox {id} is still running; stop it first or use -f"
                )));
            }
        } else {
            cri.runtime
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
                .map_err(|e| with_id("stop pod sandbox", &id, e))?;
        }
        cri.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .map_err(|e| with_id("remove pod sandbox", &id, e))?;
        println!("Removed sandbox {id}");
    }
    Ok(())
}

/// Prefixes a failed RPC's message with what was done to which id; the code
/// stays berthd's.
pub fn with_id(op: &str, id: &str, status: tonic::Status) -> Error {
    let e = Error::from(status);
    Error::Status {
        code: e.code(),
        message: format!("{op} {id:?}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_verb_keeps_berthds_code_and_names_the_id() {
        use tonic::Code;
        for code in [
            Code::AlreadyExists,
            Code::Unavailable,
            Code::NotFound,
            Code::InvalidArgument,
            Code::Internal,
        ] {
            let e = with_id("stop pod sandbox", "abc", tonic::Status::new(code, "boom"));
            assert_eq!(e.code(), code);
            assert!(
                e.to_string().starts_with("stop pod sandbox \"abc\": "),
                "{e}"
            );
            assert!(e.to_string().ends_with("boom"), "{e}");
        }
    }
    use berth_proto::v1::PodSandboxMetadata;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn pods_table_has_crictl_columns() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let pods = vec![PodSandbox {
            id: "f00dbabe".repeat(8),
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "u".into(),
                namespace: "default".into(),
                attempt: 2,
            }),
            state: PodSandboxState::SandboxReady as i32,
            created_at: 9_700 * 1_000_000_000,
            ..Default::default()
        }];
        let out = pods_table(&pods, false, now).render();
        let (header, rows) = crate::cli::output::table_cells(&out);
        assert_eq!(
            header,
            [
                "POD ID",
                "CREATED",
                "STATE",
                "NAME",
                "NAMESPACE",
                "ATTEMPT",
                "RUNTIME"
            ]
        );
        assert_eq!(
            rows[0],
            [
                "f00dbabef00db",
                "5 minutes ago",
                "Ready",
                "web",
                "default",
                "2",
                "(default)"
            ]
        );
        assert!(pods_table(&pods, true, now).render().contains(&pods[0].id));
    }

    #[test]
    fn states_parse_both_spellings() {
        assert_eq!(parse_state("Ready").unwrap(), PodSandboxState::SandboxReady);
        assert_eq!(
            parse_state("notready").unwrap(),
            PodSandboxState::SandboxNotready
        );
        parse_state("running").unwrap_err();
    }
}
