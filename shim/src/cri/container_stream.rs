//! Exec, Attach and PortForward: validate the request against the container or
//! pod, then hand back a single-use URL on berthd's streaming server, where the
//! client's (kubelet-proxied) connection does the real work through
//! [`CriStreamRuntime`].

use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::v1::{
    AttachRequest, AttachResponse, ExecRequest, ExecResponse, PortForwardRequest,
    PortForwardResponse,
};

use super::exec_sync::exec_process;
use super::lifecycle::Lifecycle;
use super::CriService;
use crate::error::{Error, Result};
use crate::state::{new_id, PodState};
use crate::streaming::{
    monitor_attach, netns, process, AsyncReadWrite, ProcessIo, StreamRuntime, StreamingServer,
};

impl CriService {
    pub(crate) async fn exec(&self, mut req: ExecRequest) -> Result<ExecResponse> {
        if req.cmd.is_empty() || req.cmd[0].is_empty() {
            return Err(Error::InvalidArgument("cmd: empty".into()));
        }
        req.container_id = self
            .lifecycle
            .running_container(&req.container_id)
            .await?
            .id;
        Ok(ExecResponse {
            url: self.streaming()?.exec_url(&req)?,
        })
    }

    pub(crate) async fn attach(&self, mut req: AttachRequest) -> Result<AttachResponse> {
        let rec = self.lifecycle.running_container(&req.container_id).await?;
        if req.tty != rec.config.tty {
            return Err(Error::InvalidArgument(format!(
                "tty: {} does not match container {} (created with tty {})",
                req.tty, rec.id, rec.config.tty
            )));
        }
        if req.stdin && !rec.config.stdin {
            return Err(Error::FailedPrecondition(format!(
                "stdin: container {} was created without stdin",
                rec.id
            )));
        }
        req.container_id = rec.id;
        Ok(AttachResponse {
            url: self.streaming()?.attach_url(&req)?,
        })
    }

    pub(crate) async fn port_forward(
        &self,
        mut req: PortForwardRequest,
    ) -> Result<PortForwardResponse> {
        let (id, entry) = self.lifecycle.pods.must_find(&req.pod_sandbox_id)?;
        if entry.get().state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {id} is not ready"
            )));
        }
        req.pod_sandbox_id = id;
        Ok(PortForwardResponse {
            url: self.streaming()?.port_forward_url(&req)?,
        })
    }

    fn streaming(&self) -> Result<&Arc<StreamingServer>> {
        self.streaming
            .get()
            .ok_or_else(|| Error::Unavailable("the streaming server is not running".into()))
    }

    /// Starts the streaming server (exec/attach/port-forward URLs) on the
    /// configured address; called once at start-up, inside the tokio runtime.
    pub async fn start_streaming(&self) -> Result<()> {
        let runtime = Arc::new(CriStreamRuntime {
            lc: self.lifecycle.clone(),
        });
        let server = StreamingServer::start(&self.config.streaming, runtime).await?;
        let _ = self.streaming.set(Arc::new(server));
        Ok(())
    }
}

/// How the streaming server reaches containers: `berth-monitor exec` for exec,
/// the monitor's attach socket for attach, a socket opened inside the pod's
/// network namespace for port-forward.
pub(crate) struct CriStreamRuntime {
    lc: Arc<Lifecycle>,
}

/// Removes an exec's process file when the session ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[async_trait::async_trait]
impl StreamRuntime for CriStreamRuntime {
    async fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
    ) -> Result<ProcessIo> {
        let rec = self.lc.running_container(container_id).await?;
        let file = rec.bundle.join(format!("exec-{}.json", &new_id()?[..16]));
        let process = exec_process(&rec.bundle.join("config.json"), &cmd, tty)?;
        std::fs::write(&file, process).map_err(Error::io("write exec process", &file))?;
        let guard = RemoveOnDrop(file.clone());
        let c = self.lc.exec_helper(&rec.state_dir, &file, tty);
        let (mut io, _pid) = if tty {
            process::spawn_with_pty(c, stdin)?
        } else {
            process::spawn_piped(c, stdin)?
        };
        let exit = io.exit;
        io.exit = Box::pin(async move {
            let _guard = guard;
            exit.await
        });
        Ok(io)
    }

    async fn attach(&self, container_id: &str, tty: bool, stdin: bool) -> Result<ProcessIo> {
        let rec = self.lc.running_container(container_id).await?;
        monitor_attach::attach_via_monitor(&rec.state_dir.join("attach.sock"), tty, stdin).await
    }

    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> Result<Box<dyn AsyncReadWrite>> {
        let (_, entry) = self.lc.pods.must_find(pod_sandbox_id)?;
        let rec = entry.get();
        let stream = match &rec.namespaces.net {
            // Host network: the pod's localhost is the node's.
            None => tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| Error::Runtime(format!("connect to 127.0.0.1:{port}: {e}")))?,
            Some(netns) => netns::connect_in_netns(netns.clone(), port).await?,
        };
        Ok(Box::new(stream))
    }
}
