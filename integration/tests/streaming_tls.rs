//! berthd's streaming server over HTTPS (`streaming.tls_cert`/`tls_key`):
//! Exec hands out `https://` URLs, berth's client runs them over SPDY and
//! WebSocket trusting the test CA, refuses a server its trust does not cover,
//! a plain-HTTP client to the TLS port fails cleanly without upsetting the
//! server, and `berth exec --tls-ca` works where plain `berth exec` refuses.

use std::time::Duration;

use berth_integration::berthd::BerthdOptions;
use berth_integration::env::{container_config, TestEnv, TestEnvOptions};
use berth_integration::registry::write_tls_files;
use berth_integration::{skip, skip_if};
use berth_proto::v1::*;
use berth_shim::streaming::client::{remote_command_trusting, RemoteStdio, TlsTrust, Transport};
use tokio::io::AsyncReadExt;

async fn exec_url(env: &mut TestEnv, cid: &str, script: &str) -> String {
    env.cri
        .runtime
        .exec(ExecRequest {
            container_id: cid.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

/// Runs `url` collecting stdout and stderr; gives up after 30 s.
async fn run(
    url: &str,
    transport: Transport,
    trust: &TlsTrust,
) -> berth_shim::error::Result<(String, String, i32)> {
    let (out_tx, mut out_rx) = tokio::io::duplex(64 * 1024);
    let (err_tx, mut err_rx) = tokio::io::duplex(64 * 1024);
    let stdio = RemoteStdio {
        stdout: Some(Box::new(out_tx)),
        stderr: Some(Box::new(err_tx)),
        ..Default::default()
    };
    let (mut out, mut err) = (String::new(), String::new());
    let (code, _, _) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(
            remote_command_trusting(url, transport, trust, stdio),
            out_rx.read_to_string(&mut out),
            err_rx.read_to_string(&mut err)
        )
    })
    .await
    .expect("the session ends within 30 s");
    Ok((out, err, code?))
}

#[tokio::test]
async fn exec_over_https_with_both_transports() {
    skip_if!(skip::first(&[
        skip::not_root(),
        skip::no_registry(),
        skip::no_busybox()
    ]));
    let certs = tempfile::tempdir().unwrap();
    let tls = write_tls_files(certs.path()).unwrap();
    let config = format!(
        "[streaming]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        tls.cert_path.display(),
        tls.key_path.display()
    );
    let mut env = TestEnv::start_with(TestEnvOptions {
        berthd: BerthdOptions::default().config(&config),
        ..TestEnvOptions::for_pods()
    })
    .await
    .unwrap();
    let pod_config = env.pod_config("tls");
    let pod = env.run_pod(&pod_config).await.unwrap();
    let c = container_config("tls", &env.image("busybox"), &["sleep", "3600"]);
    let cid = env.run_container(&pod, &pod_config, c).await.unwrap();
    let ca = TlsTrust::CaFile(tls.ca_cert_path.clone());

    for transport in [Transport::Spdy, Transport::WebSocket] {
        let url = exec_url(&mut env, &cid, "echo out; echo err >&2; exit 3").await;
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        let (out, err, code) = run(&url, transport, &ca).await.unwrap();
        assert_eq!(
            (out.as_str(), err.as_str(), code),
            ("out\n", "err\n", 3),
            "{transport:?}"
        );

        // The test CA is not in the system bundle: the certificate is refused.
        let url = exec_url(&mut env, &cid, "true").await;
        let e = run(&url, transport, &TlsTrust::System).await.unwrap_err();
        assert!(
            e.to_string().contains("TLS handshake"),
            "{transport:?}: {e}"
        );

        // Plain HTTP to the TLS port: a clean error, not a hang.
        let url = exec_url(&mut env, &cid, "true").await;
        let plain = url.replacen("https://", "http://", 1);
        let e = run(&plain, transport, &ca).await.unwrap_err();
        eprintln!("{transport:?} over plain http: {e}");
    }
    // The server is still serving after the failed handshakes.
    let url = exec_url(&mut env, &cid, "echo still").await;
    let (out, _, code) = run(&url, Transport::Spdy, &ca).await.unwrap();
    assert_eq!((out.as_str(), code), ("still\n", 0));

    // The CLI: `--tls-ca` trusts the test CA; without it the system bundle
    // does not, and berth says why instead of hanging.
    let berth = env.berthd.binary().with_file_name("berth");
    let cli = |tls_ca: Option<&std::path::Path>| {
        let mut c = std::process::Command::new(&berth);
        c.args(["-r", &env.berthd.endpoint(), "exec"]);
        if let Some(ca) = tls_ca {
            c.arg("--tls-ca").arg(ca);
        }
        c.args([&cid, "echo", "via-cli"]);
        c.output().unwrap()
    };
    let ok = cli(Some(&tls.ca_cert_path));
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "via-cli\n");
    let refused = cli(None);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("TLS handshake"), "{stderr}");
    env.remove_pod(&pod).await.unwrap();
}
