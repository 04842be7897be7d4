//! Reading a recorded trace: one JSON object per line (format in
//! `integration/kubelet-traces/README.md`), and the timeline facts the
//! comparison needs (which calls overlapped which, which containers exited by
//! themselves).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One recorded call with the reference runtime's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Call {
    pub seq: u64,
    /// Arrival, ms since the recording started.
    pub t_ms: f64,
    /// `RuntimeService/<Rpc>` or `ImageService/<Rpc>`.
    pub method: String,
    pub request: Value,
    /// `None` when the call failed.
    pub response: Option<Value>,
    /// `OK` or a gRPC code name.
    pub code: String,
    #[serde(default)]
    pub details: String,
    pub duration_ms: f64,
}

impl Call {
    /// The RPC name without its service.
    pub fn rpc(&self) -> &str {
        self.method.rsplit('/').next().unwrap_or(&self.method)
    }

    /// When the reference answered, ms since the recording started.
    pub fn end_ms(&self) -> f64 {
        self.t_ms + self.duration_ms
    }

    /// A string field of the request.
    pub fn req_str(&self, key: &str) -> &str {
        self.request.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

/// A whole trace file, in `seq` order.
#[derive(Debug, Clone)]
pub struct Trace {
    pub path: PathBuf,
    pub calls: Vec<Call>,
}

/// Every `*.jsonl` file in `dir`, sorted by name.
pub fn trace_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    out.sort();
    Ok(out)
}

impl Trace {
    /// Reads and parses `path`; a line that does not parse is an error naming it.
    pub fn load(path: &Path) -> Result<Trace> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        let mut calls = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let call: Call = serde_json::from_str(line).map_err(|e| Error::Build {
                image: format!("{}:{}", path.display(), i + 1),
                message: format!("not a trace line: {e}"),
            })?;
            calls.push(call);
        }
        calls.sort_by_key(|c| c.seq);
        Ok(Trace {
            path: path.into(),
            calls,
        })
    }

    /// The file name, for messages.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// What happened to one recorded object (container or pod), in the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Start,
    Stop,
    Remove,
}

/// A lifecycle call on an object: its seq and the reference's timing.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub kind: OpKind,
    pub seq: u64,
    pub t_ms: f64,
    pub end_ms: f64,
}

/// Lifecycle facts of the recorded objects, keyed by recorded id.
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    /// Ops on each container, including its pod's Stop/Remove.
    pub ops: HashMap<String, Vec<Op>>,
    /// Recorded container ids whose first EXITED report came before any stop
    /// of them (init containers, crash loops): they may exit ahead of the
    /// reference in a compressed replay.
    pub exits_by_itself: Vec<String>,
    /// Every PullImage: (image, op).
    pub pulls: Vec<(String, Op)>,
}

impl Timeline {
    /// Works the facts out from the calls.
    pub fn of(calls: &[Call]) -> Timeline {
        let mut t = Timeline::default();
        let mut pod_of: HashMap<String, String> = HashMap::new();
        let mut stopped: Vec<String> = Vec::new();
        let op = |kind, c: &Call| Op {
            kind,
            seq: c.seq,
            t_ms: c.t_ms,
            end_ms: c.end_ms(),
        };
        for c in calls {
            let resp = c.response.as_ref();
            match c.rpc() {
                "RunPodSandbox" => {
                    if let Some(id) = resp.and_then(|r| r["pod_sandbox_id"].as_str()) {
                        t.ops
                            .entry(id.into())
                            .or_default()
                            .push(op(OpKind::Create, c));
                    }
                }
                "CreateContainer" => {
                    if let Some(id) = resp.and_then(|r| r["container_id"].as_str()) {
                        pod_of.insert(id.into(), c.req_str("pod_sandbox_id").into());
                        t.ops
                            .entry(id.into())
                            .or_default()
                            .push(op(OpKind::Create, c));
                    }
                }
                "PullImage" => {
                    let image = c.request["image"]["image"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    t.pulls.push((image, op(OpKind::Create, c)));
                }
                "StartContainer" => t
                    .ops
                    .entry(c.req_str("container_id").into())
                    .or_default()
                    .push(op(OpKind::Start, c)),
                "StopContainer" => {
                    stopped.push(c.req_str("container_id").into());
                    t.ops
                        .entry(c.req_str("container_id").into())
                        .or_default()
                        .push(op(OpKind::Stop, c));
                }
                "RemoveContainer" => t
                    .ops
                    .entry(c.req_str("container_id").into())
                    .or_default()
                    .push(op(OpKind::Remove, c)),
                rpc @ ("StopPodSandbox" | "RemovePodSandbox") => {
                    let pod = c.req_str("pod_sandbox_id").to_string();
                    let kind = if rpc == "StopPodSandbox" {
                        OpKind::Stop
                    } else {
                        OpKind::Remove
                    };
                    t.ops.entry(pod.clone()).or_default().push(op(kind, c));
                    for (ctr, p) in &pod_of {
                        if *p == pod {
                            if kind == OpKind::Stop {
                                stopped.push(ctr.clone());
                            }
                            t.ops.entry(ctr.clone()).or_default().push(op(kind, c));
                        }
                    }
                }
                _ => {}
            }
            for (id, state) in exited_reports(c) {
                if state == "CONTAINER_EXITED"
                    && !stopped.contains(&id)
                    && !t.exits_by_itself.contains(&id)
                {
                    t.exits_by_itself.push(id);
                }
            }
        }
        t
    }

    /// The ops on recorded object `id` that the reference was still running
    /// when `call` arrived (issued before it, answered after it came).
    pub fn in_flight(&self, id: &str, call: &Call) -> Vec<OpKind> {
        self.ops
            .get(id)
            .map(|ops| {
                ops.iter()
                    .filter(|o| o.seq < call.seq && o.end_ms > call.t_ms)
                    .map(|o| o.kind)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the reference was still pulling `image` when `call` arrived.
    pub fn pull_in_flight(&self, image: &str, call: &Call) -> bool {
        self.pulls
            .iter()
            .any(|(i, o)| i == image && o.seq < call.seq && o.end_ms > call.t_ms)
    }

    /// Whether an op of `kind` on `id` was issued before `call`.
    pub fn issued_before(&self, id: &str, kind: OpKind, call: &Call) -> bool {
        self.ops
            .get(id)
            .is_some_and(|ops| ops.iter().any(|o| o.kind == kind && o.seq < call.seq))
    }
}

/// (container id, state) of every container a status or list answer reports.
fn exited_reports(c: &Call) -> Vec<(String, String)> {
    let Some(r) = c.response.as_ref() else {
        return Vec::new();
    };
    let one = |v: &Value| {
        (
            v["id"].as_str().unwrap_or("").to_string(),
            v["state"]
                .as_str()
                .unwrap_or("CONTAINER_CREATED")
                .to_string(),
        )
    };
    match c.rpc() {
        "ContainerStatus" => r.get("status").map(one).into_iter().collect(),
        "ListContainers" => r["containers"]
            .as_array()
            .map(|a| a.iter().map(one).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}
