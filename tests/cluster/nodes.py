"""Real multi-node clusters on 127.0.0.1 for tests: one `shoal start ... --block` per node.

Each node is a separate `shoal start` process (with its own node manager, workers and object
store), started exactly as a user would start one. `kill_node` SIGKILLs a node manager to
simulate a machine dying; `stop` ends every node it started, by pid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field

from shoal._core.node_launcher import read_until

STORE_BYTES = 600 * 1024 * 1024
NODE_TIMEOUT_S = 2.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Node:
    process: subprocess.Popen
    manager_pid: int
    output: str
    resources: dict = field(default_factory=dict)
    port: int | None = None  # the node manager's TCP port

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalCluster:
    def __init__(self, env: dict | None = None):
        self.env = dict(os.environ)
        self.env["SHOAL_NODE_TIMEOUT_S"] = str(NODE_TIMEOUT_S)
        self.env.update(env or {})
        self.port = free_port()
        self.nodes: list[Node] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, args: list, resources: dict, marker: str) -> Node:
        command = [
            sys.executable,
            "-m",
            "shoal.cli",
            "start",
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(STORE_BYTES),
            "--resources",
            json.dumps(resources),
            "--block",
            *args,
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env)
        try:
            output = read_until(process, "Stop it with", 60, "the node did not start")
            if "Stop it with" not in output:
                raise RuntimeError(f"the node exited ({process.wait()}) before it started:\n{output}")
        except BaseException:
            process.kill()
            process.wait()
            raise
        pid = int(re.search(r"node manager pid (\d+)", output).group(1))
        port = re.search(r"(?:TCP address|listens on): 127\.0\.0\.1:(\d+)", output)
        node = Node(process, pid, output, resources, int(port.group(1)) if port else None)
        self.nodes.append(node)
        return node

    def start_head(self, resources: dict | None = None) -> Node:
        return self._start(["--head", "--port", str(self.port)], resources or {"head_only": 1}, "Started")

    def add_node(self, resources: dict) -> Node:
        return self._start(["--address", self.address], resources, "Joined")

    def kill_node(self, node: Node) -> None:
        """SIGKILL the node manager, as if its machine died; its workers go with it."""
        try:
            os.kill(node.manager_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.process.wait(timeout=30)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.alive:
                node.process.send_signal(signal.SIGTERM)
        for node in reversed(self.nodes):
            try:
                node.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
            if node.process.stdout is not None:
                node.process.stdout.close()
