"""Starting a node manager process and finding a running cluster.

The embedded cluster of `shoal.init()` is a node manager started as a child of the driver,
in its own session (a terminal's or Jupyter's interrupt never reaches it), told to exit when
the driver does. `shoal start` starts the same process detached and records its address in
the user's temp directory so that `init(address="auto")` finds it.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from . import config, lifecycle

ADDRESS_FILE = "current_cluster.json"


@dataclass
class HeadProcess:
    process: subprocess.Popen | None
    pid: int
    endpoint: str
    session_dir: str
    tcp_address: str | None = None  # host:port when the node listens on TCP
    token: str | None = None
    node_id: str = ""


def detect_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() not in ("", "-1")])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len([line for line in out.stdout.splitlines() if line.startswith("GPU ")])


def node_resources(num_cpus, num_gpus, resources, object_store_bytes, node_ip: str, head: bool = True) -> dict:
    import psutil

    total = {"CPU": float(os.cpu_count() or 1 if num_cpus is None else num_cpus)}
    gpus = detect_gpus() if num_gpus is None else num_gpus
    if gpus:
        total["GPU"] = float(gpus)
    total["memory"] = float(int(psutil.virtual_memory().available * 0.7))
    total["object_store_memory"] = float(object_store_bytes)
    total[f"node:{node_ip}"] = 1.0
    if head:
        total["node:__internal_head__"] = 1.0
    for name, amount in (resources or {}).items():
        total[name] = float(amount)
    return total


def start_node(
    resources: dict,
    object_store_bytes: int,
    env_vars: dict | None,
    node_ip: str = "127.0.0.1",
    embedded: bool = True,
    tcp_port: int | None = None,
    bind_host: str | None = None,
    head_address: str | None = None,
    token: str | None = None,
) -> HeadProcess:
    """Start a node manager: a head (no `head_address`) or a node joining that head."""
    lifecycle.collect_stale_sessions()
    session_dir = lifecycle.new_session_dir()
    if head_address is None and tcp_port is not None:
        from . import auth

        token = auth.new_token()
    if token is not None:
        from . import auth

        auth.write_token(session_dir, token)
    options = {
        "session_dir": session_dir,
        "node_id": os.urandom(16).hex(),
        "node_ip": node_ip,
        "resources": resources,
        "object_store_bytes": object_store_bytes,
        "env_vars": env_vars or {},
        "parent_pid": os.getpid() if embedded else None,
        "owns_session_dir": True,
        "tcp_port": tcp_port,
        "bind_host": bind_host or "127.0.0.1",
        "token": token,
        "head_address": head_address,
    }
    log = os.open(os.path.join(session_dir, "logs", "node_manager.err"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    process = subprocess.Popen(
        [sys.executable, "-m", "shoal._core.node_main"],  # options on stdin: `ps` shows no token
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,
        close_fds=True,
    )
    os.close(log)
    lifecycle.record_session_owner(session_dir, process.pid)
    assert process.stdin is not None and process.stdout is not None  # both are pipes
    process.stdin.write(json.dumps(options).encode())
    process.stdin.close()
    try:
        line = _read_line(process, config.load_config().head_start_timeout_s)
    except BaseException:
        stop_node(HeadProcess(process, process.pid, "", session_dir))
        raise
    if not line.startswith("READY "):
        tail = _log_tail(session_dir)
        stop_node(HeadProcess(process, process.pid, "", session_dir))
        refused = line.strip().partition("FAILED ConnectionError: ")[2]
        if refused:
            raise RuntimeError(refused)  # a wrong token or no head: the reason is the whole story
        raise RuntimeError(f"the shoal node manager failed to start: {line.strip() or 'no output'}\n{tail}")
    process.stdout.close()
    endpoint, _, tcp_endpoint = line.split(" ", 1)[1].strip().partition(" ")
    tcp_address = tcp_endpoint.replace("tcp://", "") or None
    return HeadProcess(process, process.pid, endpoint, session_dir, tcp_address, token, options["node_id"])


def _read_line(process: subprocess.Popen, timeout_s: float) -> str:
    return read_until(process, "\n", timeout_s, "the shoal node manager did not start")


def read_until(process: subprocess.Popen, marker: str, timeout_s: float, what: str = "no output") -> str:
    """What a child prints on stdout up to `marker` (or until it exits).

    Raises:
        TimeoutError: `marker` did not come within `timeout_s`; the message starts with `what`.
    """
    if process.stdout is None:
        raise ValueError("read_until reads a child's stdout: start it with stdout=subprocess.PIPE")
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    data = b""
    try:
        while marker.encode() not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what} within {timeout_s} s; output so far: {data.decode(errors='replace')!r}")
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            data += chunk
    finally:
        selector.close()
    return data.decode(errors="replace")


def _log_tail(session_dir: str) -> str:
    lines = []
    for name in ("node_manager.err", "node_manager.log"):
        try:
            with open(os.path.join(session_dir, "logs", name), errors="replace") as handle:
                lines += handle.readlines()[-20:]
        except OSError:
            pass
    return "".join(lines)


def stop_node(head: HeadProcess, timeout_s: float = 5.0) -> str | None:
    """Stop a node manager (SIGTERM, then SIGKILL) and remove its session directory.

    Returns:
        Where its logs are kept, when it had died on its own without cleaning up (a crash, a
        SIGKILL, the OOM killer): they move out of the session first (lifecycle.keep_logs).
    """
    import signal

    died = head.process.poll() is not None if head.process is not None else not lifecycle.pid_alive(head.pid)
    kept = lifecycle.keep_logs(head.session_dir) if died else None
    lifecycle.kill_quietly(head.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    if head.process is not None:
        try:
            head.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            head.process.kill()
            head.process.wait()
    else:
        while lifecycle.pid_alive(head.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if lifecycle.pid_alive(head.pid):
            lifecycle.kill_quietly(head.pid)
    lifecycle.remove_session_dir(head.session_dir)
    return kept


_local_nodes: dict[str, HeadProcess] = {}  # tcp host:port -> a node this process started


def remember_local_node(node: HeadProcess) -> None:
    """A node this process started (shoal.cluster_utils): init(address=its host:port) uses ipc."""
    if node.tcp_address:
        _local_nodes[node.tcp_address] = node


def forget_local_node(node: HeadProcess) -> None:
    if node.tcp_address and _local_nodes.get(node.tcp_address) is node:
        del _local_nodes[node.tcp_address]


def local_node_at(address: str) -> HeadProcess | None:
    """A node on this machine listening at host:port, reachable through its ipc socket."""
    node = _local_nodes.get(address)
    if node is not None:
        return node
    head = read_address()
    if head is not None and head.tcp_address == address:
        return head
    return None


def address_file() -> str:
    return os.path.join(config.temp_root(), ADDRESS_FILE)


def write_address(head: HeadProcess) -> None:
    os.makedirs(config.temp_root(), mode=0o700, exist_ok=True)
    with open(address_file(), "w") as handle:
        json.dump(
            {
                "endpoint": head.endpoint,
                "pid": head.pid,
                "session_dir": head.session_dir,
                "tcp_address": head.tcp_address,
            },
            handle,
        )
    os.chmod(address_file(), 0o600)


def crashed_head() -> tuple[int, str] | None:
    """(pid, where its logs are) of the head `shoal start` last started here, if it died without
    cleaning up; what else its session directory held is removed."""
    try:
        with open(address_file()) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if lifecycle.pid_alive(data["pid"]):
        return None
    kept = lifecycle.keep_logs(data["session_dir"])
    lifecycle.remove_session_dir(data["session_dir"])
    return (data["pid"], kept) if kept else None


def read_address() -> HeadProcess | None:
    try:
        with open(address_file()) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if not lifecycle.pid_alive(data["pid"]):
        return None
    from . import auth

    return HeadProcess(
        None,
        data["pid"],
        data["endpoint"],
        data["session_dir"],
        data.get("tcp_address"),
        auth.read_token(data["session_dir"]),
    )


def _member_file(pid: int) -> str:
    return os.path.join(config.temp_root(), f"member-{pid}.json")


def write_member(node: HeadProcess) -> None:
    """Record a node that joined another cluster, so that `shoal stop` can stop it."""
    os.makedirs(config.temp_root(), mode=0o700, exist_ok=True)
    path = _member_file(node.pid)
    with open(path, "w") as handle:
        json.dump({"endpoint": node.endpoint, "pid": node.pid, "session_dir": node.session_dir}, handle)
    os.chmod(path, 0o600)


def read_members() -> list[HeadProcess]:
    members = []
    try:
        names = os.listdir(config.temp_root())
    except OSError:
        return members
    for name in sorted(names):
        if not (name.startswith("member-") and name.endswith(".json")):
            continue
        path = os.path.join(config.temp_root(), name)
        try:
            with open(path) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if not lifecycle.pid_alive(data["pid"]):
            os.unlink(path)
            continue
        members.append(HeadProcess(None, data["pid"], data["endpoint"], data["session_dir"]))
    return members


def clear_member(node: HeadProcess) -> None:
    try:
        os.unlink(_member_file(node.pid))
    except OSError:
        pass


def clear_address() -> None:
    try:
        os.unlink(address_file())
    except OSError:
        pass
