//! Streaming benchmarks: CRI `Exec` followed by the streaming session its URL
//! names, driven by berth's own client (`berth_shim::streaming::client`) over
//! SPDY/3.1 and over WebSocket, against any CRI endpoint (berthd, containerd).
//!
//! * Round trip: the `Exec` RPC for `true` (stdout + stderr requested) plus
//!   running the returned URL to its exit status.
//! * Throughput: `head -c <bytes> /dev/zero` with stdout counted by a sink that
//!   keeps nothing; the sample is the whole time from the `Exec` RPC to the
//!   exit status, so a sample is "time per <bytes>", and a p50 ratio compares
//!   throughputs inversely. A short count is a failure, not a sample.
//!
//! Rows have the shape of the other workloads in [`crate::bench`]
//! (`(workload, operation, outcome)`), so the driver prints them side by side.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use berth_proto::v1 as cri;
use berth_shim::streaming::client::{remote_command, RemoteStdio, Transport};
use berth_shim::streaming::BoxWriter;
use tokio::io::AsyncWrite;
use tonic::Code;

use crate::bench::{Outcome, Unit};
use crate::client::Cri;

/// How much to measure.
#[derive(Clone, Debug)]
pub struct ExecStreamOptions {
    /// Exec round trips per transport.
    pub round_trips: usize,
    /// Throughput runs per transport.
    pub throughput_runs: usize,
    /// Bytes of stdout per throughput run.
    pub throughput_bytes: u64,
    /// Longest a single exec session may take before it counts as failed.
    pub session_timeout: Duration,
}

impl Default for ExecStreamOptions {
    fn default() -> Self {
        ExecStreamOptions {
            round_trips: 20,
            throughput_runs: 3,
            throughput_bytes: 100 * 1024 * 1024,
            session_timeout: Duration::from_secs(120),
        }
    }
}

/// Both transports, in row order.
pub const TRANSPORTS: [Transport; 2] = [Transport::Spdy, Transport::WebSocket];

/// The workload name of the round-trip rows.
pub const ROUND_TRIP_WORKLOAD: &str = "exec round trip (`true`)";

/// The workload name of the throughput rows: `exec <size> stdout`, the size
/// in MiB or MB when whole, else in bytes.
pub fn throughput_workload(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const MB: u64 = 1_000_000;
    if bytes >= MB && bytes.is_multiple_of(MIB) {
        format!("exec {} MiB stdout", bytes / MIB)
    } else if bytes >= MB && bytes.is_multiple_of(MB) {
        format!("exec {} MB stdout", bytes / MB)
    } else {
        format!("exec {bytes} B stdout")
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Spdy => "SPDY",
        Transport::WebSocket => "WebSocket",
    }
}

/// Operation name of a transport's time row.
fn time_op(t: Transport) -> &'static str {
    match t {
        Transport::Spdy => "Exec + SPDY session",
        Transport::WebSocket => "Exec + WebSocket session",
    }
}

/// Operation name of a transport's MiB/s row.
fn rate_op(t: Transport) -> &'static str {
    match t {
        Transport::Spdy => "SPDY MiB/s at p50",
        Transport::WebSocket => "WebSocket MiB/s at p50",
    }
}

/// Starts a pod with a sleeping busybox container (`image`, already pulled;
/// pod logs under `log_dir`), measures exec round trips and exec stdout
/// throughput over both transports, and removes the pod. Returns, in order:
/// per transport a round-trip row; then per transport a throughput time row
/// followed by its MiB/s row (a [`Unit::Count`] value computed from the p50
/// time; higher is better, unlike the time rows).
///
/// A transport the server refuses shows up as a [`Outcome::Failed`] naming
/// the transport and the error; it never aborts the other rows.
pub async fn exec_streaming(
    client: &mut Cri,
    image: &str,
    log_dir: &std::path::Path,
    options: &ExecStreamOptions,
) -> Vec<(String, &'static str, Outcome)> {
    let throughput = throughput_workload(options.throughput_bytes);
    let (pod_id, container_id) =
        match crate::bench::start_sleeper_pod(client, "exec-stream", image, log_dir)
            .await
            .map(|p| (p.pod_id, p.container_id))
        {
            Ok(ids) => ids,
            Err(e) => {
                let failed = Outcome::Failed(format!("setup: {e}"));
                let mut rows = Vec::new();
                for t in TRANSPORTS {
                    rows.push((ROUND_TRIP_WORKLOAD.to_string(), time_op(t), failed.clone()));
                }
                for t in TRANSPORTS {
                    rows.push((throughput.clone(), time_op(t), failed.clone()));
                    rows.push((throughput.clone(), rate_op(t), failed.clone()));
                }
                return rows;
            }
        };
    let mut rows = Vec::new();
    for t in TRANSPORTS {
        let o = round_trips(client, &container_id, t, options).await;
        rows.push((ROUND_TRIP_WORKLOAD.to_string(), time_op(t), o));
    }
    for t in TRANSPORTS {
        let o = throughput_runs(client, &container_id, t, options).await;
        let rate = match o.quantile(0.5) {
            Some(p50) if p50 > Duration::ZERO => Outcome::Value(
                options.throughput_bytes as f64 / (1024.0 * 1024.0) / p50.as_secs_f64(),
                Unit::Count,
            ),
            _ => o.clone(),
        };
        rows.push((throughput.clone(), time_op(t), o));
        rows.push((throughput.clone(), rate_op(t), rate));
    }
    crate::bench::remove_pod(client, &pod_id).await;
    rows
}

/// Samples of one operation; the first error ends collection and, as in
/// [`crate::bench`], is what gets reported.
#[derive(Default)]
struct Samples {
    took: Vec<Duration>,
    error: Option<Outcome>,
}

impl Samples {
    fn outcome(self) -> Outcome {
        match self.error {
            Some(e) => e,
            None if self.took.is_empty() => Outcome::NotRun,
            None => Outcome::Samples(self.took),
        }
    }
}

/// Why an exec attempt produced no sample.
enum ExecError {
    /// The `Exec` RPC failed.
    Rpc(tonic::Status),
    /// The streaming session failed or reported something unexpected.
    Session(String),
}

impl ExecError {
    fn into_outcome(self, t: Transport) -> Outcome {
        match self {
            ExecError::Rpc(s) if s.code() == Code::Unimplemented => Outcome::Unimplemented,
            ExecError::Rpc(s) => Outcome::Failed(format!("Exec: {:?}: {}", s.code(), s.message())),
            ExecError::Session(m) => Outcome::Failed(format!("{}: {m}", transport_name(t))),
        }
    }
}

/// Exec RPC (stdout and stderr requested) then the session to its end, output
/// into `stdout`/`stderr`; returns the remote exit code.
async fn exec_once(
    client: &mut Cri,
    container_id: &str,
    cmd: &[String],
    transport: Transport,
    stdout: BoxWriter,
    stderr: BoxWriter,
    timeout: Duration,
) -> Result<i32, ExecError> {
    let url = client
        .runtime
        .exec(cri::ExecRequest {
            container_id: container_id.into(),
            cmd: cmd.to_vec(),
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .map_err(ExecError::Rpc)?
        .into_inner()
        .url;
    let stdio = RemoteStdio {
        stdout: Some(stdout),
        stderr: Some(stderr),
        ..Default::default()
    };
    match tokio::time::timeout(timeout, remote_command(&url, transport, stdio)).await {
        Ok(Ok(code)) => Ok(code),
        Ok(Err(e)) => Err(ExecError::Session(e.to_string())),
        Err(_) => Err(ExecError::Session(format!(
            "session not finished after {timeout:?}"
        ))),
    }
}

async fn round_trips(
    client: &mut Cri,
    container_id: &str,
    transport: Transport,
    options: &ExecStreamOptions,
) -> Outcome {
    let cmd = vec!["true".to_string()];
    let mut samples = Samples::default();
    for _ in 0..options.round_trips {
        let (stderr, kept) = Sink::keeping(4096);
        let start = Instant::now();
        let r = exec_once(
            client,
            container_id,
            &cmd,
            transport,
            Box::new(tokio::io::sink()),
            Box::new(stderr),
            options.session_timeout,
        )
        .await;
        let took = start.elapsed();
        match r {
            Ok(0) => samples.took.push(took),
            Ok(code) => {
                samples.error = Some(Outcome::Failed(format!(
                    "{}: `true` exited with {code}: {}",
                    transport_name(transport),
                    kept.text()
                )));
                break;
            }
            Err(e) => {
                samples.error = Some(e.into_outcome(transport));
                break;
            }
        }
    }
    samples.outcome()
}

async fn throughput_runs(
    client: &mut Cri,
    container_id: &str,
    transport: Transport,
    options: &ExecStreamOptions,
) -> Outcome {
    let bytes = options.throughput_bytes;
    let cmd: Vec<String> = ["head", "-c", &bytes.to_string(), "/dev/zero"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut samples = Samples::default();
    for _ in 0..options.throughput_runs {
        let (stdout, counted) = Sink::keeping(0);
        let (stderr, kept) = Sink::keeping(4096);
        let start = Instant::now();
        let r = exec_once(
            client,
            container_id,
            &cmd,
            transport,
            Box::new(stdout),
            Box::new(stderr),
            options.session_timeout,
        )
        .await;
        let took = start.elapsed();
        let got = counted.count();
        let failure = match r {
            Ok(0) if got == bytes => {
                samples.took.push(took);
                continue;
            }
            Ok(0) => Outcome::Failed(format!(
                "{}: received {got} bytes of stdout, expected {bytes}",
                transport_name(transport)
            )),
            Ok(code) => Outcome::Failed(format!(
                "{}: `head` exited with {code} after {got} bytes: {}",
                transport_name(transport),
                kept.text()
            )),
            Err(e) => e.into_outcome(transport),
        };
        samples.error = Some(failure);
        break;
    }
    samples.outcome()
}

/// What a [`Sink`] saw: the byte count and the first bytes.
#[derive(Clone, Default)]
struct Seen {
    count: Arc<AtomicU64>,
    head: Arc<Mutex<Vec<u8>>>,
}

impl Seen {
    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn text(&self) -> String {
        let head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&head).trim().to_string()
    }
}

/// An output that counts what it is given and keeps only the first `keep`
/// bytes (for error messages): the throughput run measures the transport,
/// not memory copies into a buffer.
struct Sink {
    seen: Seen,
    keep: usize,
}

impl Sink {
    fn keeping(keep: usize) -> (Sink, Seen) {
        let seen = Seen::default();
        (
            Sink {
                seen: seen.clone(),
                keep,
            },
            seen,
        )
    }
}

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let before = self
            .seen
            .count
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        let before = usize::try_from(before).unwrap_or(usize::MAX);
        if before < self.keep {
            let take = (self.keep - before).min(buf.len());
            let mut head = self.seen.head.lock().unwrap_or_else(|p| p.into_inner());
            head.extend_from_slice(&buf[..take]);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
