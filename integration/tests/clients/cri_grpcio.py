"""A CRI client in Python grpcio, driving berthd as a tool in another language would.

Usage: cri_grpcio.py SOCKET PROTO_DIR IMAGE LOG_DIR AUTHORITY_MODE

The stubs are generated here, at run time, from Berth's own proto file with
grpcio-tools. AUTHORITY_MODE `default` opens the channel with grpcio's default
options (gRPC C-core then sends the %-encoded socket path as :authority);
`raw-path` sets grpc.default_authority to the socket path itself, which is
what grpc-java and grpcurl send. Prints one JSON object with what berthd
answered; the Rust test that runs this script judges it.
"""

import json
import os
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc


def stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="berth-grpcio-")
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            os.path.join(proto_dir, "api.proto"),
        ]
    )
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    import api_pb2
    import api_pb2_grpc

    return api_pb2, api_pb2_grpc


def main():
    socket, proto_dir, image, log_dir, mode = sys.argv[1:6]
    pb, rpc = stubs(proto_dir)
    options = []
    if mode == "raw-path":
        options.append(("grpc.default_authority", socket))
    elif mode != "default":
        sys.exit(f"unknown authority mode {mode}")
    channel = grpc.insecure_channel(f"unix://{socket}", options=options)
    runtime = rpc.RuntimeServiceStub(channel)
    images = rpc.ImageServiceStub(channel)
    result = {}

    version = runtime.Version(pb.VersionRequest(), timeout=30)
    result["version"] = {
        "runtime_name": version.runtime_name,
        "runtime_api_version": version.runtime_api_version,
    }

    pulled = images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image)), timeout=120)
    result["image_ref"] = pulled.image_ref

    # Server streaming: subscribe before anything happens. Initial metadata
    # arrives once berthd has subscribed, so no event can be missed.
    events = runtime.GetContainerEvents(pb.GetEventsRequest())
    events.initial_metadata()
    seen = []
    started = threading.Event()

    def watch():
        try:
            for ev in events:
                seen.append([ev.container_id, pb.ContainerEventType.Name(ev.container_event_type)])
                if ev.container_event_type == pb.CONTAINER_STARTED_EVENT:
                    started.set()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                seen.append(["error", str(e.code())])
            started.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    name = f"grpcio-{mode}"
    pod_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="python"),
        hostname=name,
        log_directory=log_dir,
    )
    pod = runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config), timeout=60).pod_sandbox_id
    result["pod_id"] = pod
    container = runtime.CreateContainer(
        pb.CreateContainerRequest(
            pod_sandbox_id=pod,
            config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="sleeper"),
                image=pb.ImageSpec(image=image),
                command=["sleep", "3600"],
                log_path="sleeper.log",
            ),
            sandbox_config=pod_config,
        ),
        timeout=60,
    ).container_id
    result["container_id"] = container
    runtime.StartContainer(pb.StartContainerRequest(container_id=container), timeout=60)
    result["started_event"] = started.wait(timeout=30)

    status = runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=container), timeout=30)
    result["state"] = pb.ContainerState.Name(status.status.state)

    ex = runtime.ExecSync(
        pb.ExecSyncRequest(
            container_id=container,
            cmd=["sh", "-c", "echo out-$((6*7)); echo err >&2; exit 3"],
            timeout=30,
        ),
        timeout=60,
    )
    result["exec"] = {
        "stdout": ex.stdout.decode(),
        "stderr": ex.stderr.decode(),
        "exit_code": ex.exit_code,
    }

    runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    left = runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30)
    result["pods_left"] = [p.id for p in left.items if p.id == pod]

    # A NOT_FOUND comes back as a status, not as a broken stream.
    try:
        runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=container), timeout=30)
        result["removed_status"] = "OK"
    except grpc.RpcError as e:
        result["removed_status"] = e.code().name

    events.cancel()
    watcher.join(timeout=30)
    result["events"] = [kind for cid, kind in seen if cid == container]
    result["event_errors"] = [kind for cid, kind in seen if cid == "error"]
    channel.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
