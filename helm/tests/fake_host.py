#!/usr/bin/env python3
"""Stand-in for `nsenter -t 1 ... --` + systemd in the installer tests.

This machine has no systemd as PID 1, so `systemctl` cannot run. The installer
calls `$HOST_EXEC systemctl VERB UNIT`; with HOST_EXEC pointing here, each call
is appended to $FAKE_HOST_DIR/calls and berthd.service is run for real: the
ExecStart line of the unit the installer wrote is read from the fake host root,
its absolute paths are taken below $HOST_ROOT, and berthd gets flags that keep
its socket and state there too. The kubelet is only recorded; its
`is-active` answer comes from $FAKE_HOST_DIR/kubelet-active (default: active).
"""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ["HOST_ROOT"])
STATE = Path(os.environ["FAKE_HOST_DIR"])
PIDFILE = STATE / "berthd.pid"


def record(argv):
    with open(STATE / "calls", "a") as f:
        f.write(" ".join(argv) + "\n")


def alive(pid):
    # A zombie counts as gone: nothing may reap it here (PID 1 is not an init).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_pid():
    try:
        pid = int(PIDFILE.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def exec_start():
    unit = (ROOT / "etc/systemd/system/berthd.service").read_text()
    line = next(l for l in unit.splitlines() if l.startswith("ExecStart="))
    argv = shlex.split(line[len("ExecStart="):])
    # Host paths in the unit live below the fake root.
    return [str(ROOT) + a if a.startswith("/") else a for a in argv]


def start():
    if running_pid():
        return 0
    argv = exec_start() + [
        "--listen", f"unix://{ROOT}/run/berth/berth.sock",
        "--root", f"{ROOT}/var/lib/berth",
        "--state-dir", f"{ROOT}/run/berth",
    ]
    log = open(STATE / "berthd.log", "a")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    PIDFILE.write_text(str(proc.pid))
    return 0


def stop():
    pid = running_pid()
    if pid is None:
        return 0
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not alive(pid):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    PIDFILE.unlink(missing_ok=True)
    return 0


def main(argv):
    record(argv)
    if not argv or argv[0] != "systemctl":
        print(f"fake_host: unsupported command {argv}", file=sys.stderr)
        return 2
    args = [a for a in argv[1:] if not a.startswith("-")]
    verb, units = args[0], args[1:]
    if units and units[0] in ("kubelet", "kubelet.service") or verb == "is-active":
        if verb == "is-active":
            f = STATE / "kubelet-active"
            return 0 if not f.exists() or f.read_text().strip() == "yes" else 3
        return 0
    if verb in ("daemon-reload", "enable"):
        return 0
    if verb == "start":
        return start()
    if verb == "restart":
        stop()
        return start()
    if verb == "stop":
        return stop()
    print(f"fake_host: unsupported systemctl verb {verb}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
