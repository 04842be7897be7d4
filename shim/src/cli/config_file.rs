//! crictl's pod and container config files (`runp pod.json`, `create … c.yaml`):
//! JSON or YAML holding a `PodSandboxConfig` / `ContainerConfig` in the protobuf
//! JSON mapping, with snake_case or camelCase keys.

use std::path::Path;

use berth_proto::v1::{ContainerConfig, PodSandboxConfig};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Reads a pod sandbox config file.
pub fn load_pod_config(path: &Path) -> Result<PodSandboxConfig> {
    load(path)
}

/// Reads a container config file.
pub fn load_container_config(path: &Path) -> Result<ContainerConfig> {
    load(path)
}

fn load<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        op: "read config file",
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|e| Error::InvalidArgument(format!("config file {}: {e}", path.display())))
}

/// Parses JSON, or YAML when the text is not JSON.
pub fn parse<T: DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(json_err) => serde_yaml::from_str(text)
            .map_err(|e| format!("neither json ({json_err}) nor yaml ({e})"))?,
    };
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_JSON: &str = r#"{
        "metadata": {"name": "nginx-sandbox", "namespace": "default", "attempt": 1, "uid": "hdishd83djaidwnduwk28bcsb"},
        "log_directory": "/tmp",
        "hostname": "web",
        "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": 8080}],
        "labels": {"app": "web"},
        "linux": {"security_context": {"namespace_options": {"network": 0, "pid": 1}}}
    }"#;

    const POD_YAML: &str = "
metadata:
  name: nginx-sandbox
  namespace: default
  attempt: 1
  uid: hdishd83djaidwnduwk28bcsb
log_directory: /tmp
hostname: web
port_mappings:
  - protocol: TCP
    container_port: 80
    host_port: 8080
labels:
  app: web
linux:
  security_context:
    namespace_options:
      pid: CONTAINER
";

    const CONTAINER_JSON: &str = r#"{
        "metadata": {"name": "busybox"},
        "image": {"image": "busybox:latest"},
        "command": ["top"],
        "args": ["-b"],
        "envs": [{"key": "A", "value": "b"}],
        "log_path": "busybox.0.log",
        "working_dir": "/",
        "linux": {"resources": {"memory_limit_in_bytes": "104857600", "cpu_shares": 512}}
    }"#;

    const CONTAINER_YAML: &str = "
metadata:
  name: busybox
image:
  image: busybox:latest
command: [top]
args: ['-b']
envs:
  - key: A
    value: b
logPath: busybox.0.log
workingDir: /
linux:
  resources:
    memory_limit_in_bytes: 104857600
    cpu_shares: 512
";

    fn check_pod(p: &PodSandboxConfig) {
        let m = p.metadata.as_ref().unwrap();
        assert_eq!(m.name, "nginx-sandbox");
        assert_eq!(m.namespace, "default");
        assert_eq!(m.attempt, 1);
        assert_eq!(m.uid, "hdishd83djaidwnduwk28bcsb");
        assert_eq!(p.log_directory, "/tmp");
        assert_eq!(p.hostname, "web");
        assert_eq!(p.port_mappings.len(), 1);
        assert_eq!(p.port_mappings[0].container_port, 80);
        assert_eq!(p.port_mappings[0].host_port, 8080);
        assert_eq!(p.labels.get("app").map(String::as_str), Some("web"));
        let ns = p
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .unwrap();
        assert_eq!(ns.pid, 1, "pid CONTAINER");
    }

    fn check_container(c: &ContainerConfig) {
        assert_eq!(c.metadata.as_ref().unwrap().name, "busybox");
        assert_eq!(c.image.as_ref().unwrap().image, "busybox:latest");
        assert_eq!(c.command, ["top"]);
        assert_eq!(c.args, ["-b"]);
        assert_eq!(c.envs[0].key, "A");
        assert_eq!(c.envs[0].value, "b");
        assert_eq!(c.log_path, "busybox.0.log");
        assert_eq!(c.working_dir, "/");
        let r = c.linux.as_ref().unwrap().resources.as_ref().unwrap();
        assert_eq!(r.memory_limit_in_bytes, 104_857_600);
        assert_eq!(r.cpu_shares, 512);
    }

    #[test]
    fn crictl_pod_config_in_json_and_yaml() {
        check_pod(&parse(POD_JSON).unwrap());
        check_pod(&parse(POD_YAML).unwrap());
    }

    #[test]
    fn crictl_container_config_in_json_and_yaml() {
        check_container(&parse(CONTAINER_JSON).unwrap());
        check_container(&parse(CONTAINER_YAML).unwrap());
    }

    #[test]
    fn bad_files_are_errors_naming_the_path() {
        parse::<PodSandboxConfig>("{not json: [").unwrap_err();
        parse::<PodSandboxConfig>(r#"{"metadata": "x"}"#).unwrap_err();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.json");
        let err = load_pod_config(&path).unwrap_err().to_string();
        assert!(err.contains("pod.json"), "{err}");
        std::fs::write(&path, POD_JSON).unwrap();
        check_pod(&load_pod_config(&path).unwrap());
    }
}
