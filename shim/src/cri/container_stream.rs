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
use crate::streaming::{netns, process, AsyncReadWrite, ProcessIo, StreamRuntime, StreamingServer};

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
        self.lc.runtime.attach(&rec.state_dir, tty, stdin).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::lifecycle::fake::TestCri;
    use crate::cri::lifecycle::{ContainerRuntime, Observed};
    use crate::state::ContainerState;
    use tokio::io::AsyncReadExt;

    async fn stdout_and_exit(io: ProcessIo) -> (String, i32) {
        let mut out = String::new();
        io.stdout
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .unwrap();
        (out, io.exit.await.unwrap())
    }

    #[tokio::test]
    async fn attach_refuses_a_tty_mismatch_and_stdin_the_container_does_not_have() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        let r = |tty, stdin| AttachRequest {
            container_id: id.clone(),
            tty,
            stdin,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let e = t.cri.attach(r(true, false)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.to_string().contains("tty"), "{e}");
        let e = t.cri.attach(r(false, true)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        assert!(e.to_string().contains("stdin"), "{e}");
        let exited = t.add_container("done", ContainerState::Exited);
        let e = t
            .cri
            .attach(AttachRequest {
                container_id: exited,
                ..r(false, false)
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    }

    #[tokio::test]
    async fn a_stream_session_attaches_through_the_runtime_to_that_container() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        t.runtime.set_script("echo attached");
        let rt = CriStreamRuntime {
            lc: t.cri.lifecycle.clone(),
        };
        let io = rt.attach(&id[..10], false, false).await.unwrap();
        assert_eq!(stdout_and_exit(io).await, ("attached\n".into(), 0));
        // The runtime lost it: the session fails instead of hanging.
        t.runtime.delete(&t.state_dir(&id)).unwrap();
        t.runtime
            .add(&t.state_dir(&id), Observed::Running { started_at: 1 });
        t.runtime
            .fail("attach", || Error::Runtime("fake: no attach socket".into()));
        rt.attach(&id, false, false).await.unwrap_err();
    }

    #[tokio::test]
    async fn a_stream_exec_runs_the_command_and_drops_its_process_file_at_exit() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        t.runtime.set_script("echo in-container; exit 5");
        let rt = CriStreamRuntime {
            lc: t.cri.lifecycle.clone(),
        };
        let io = rt.exec(&id, vec!["sh".into()], false, false).await.unwrap();
        assert_eq!(stdout_and_exit(io).await, ("in-container\n".into(), 5));
        let bundle = t.record(&id).unwrap().bundle;
        let exec_files = std::fs::read_dir(&bundle)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("exec-"))
            .count();
        assert_eq!(exec_files, 0);
        let created = t.add_container("new", ContainerState::Created);
        rt.exec(&created, vec!["sh".into()], false, false)
            .await
            .unwrap_err();
    }
}
