"""The control store: job table and internal key-value store of a cluster.

Held by the head's node manager in the same event loop (fast single-node start), behind its
own interface so it can move to its own process. Pure data: no sockets, no threads.
"""

from __future__ import annotations

import time

from .ids import job_id_of


class ControlStore:
    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.kv: dict[tuple[str, bytes], bytes] = {}

    def add_job(self, client_id: str, pid: int, namespace: str | None) -> str:
        job_id = job_id_of(bytes.fromhex(client_id)).hex()  # what the driver's get_job_id() says
        self.jobs[client_id] = {
            "job_id": job_id,
            "driver_pid": pid,
            "namespace": namespace,
            "status": "RUNNING",
            "start_time": time.time(),
        }
        return job_id

    def finish_job(self, client_id: str) -> None:
        job = self.jobs.get(client_id)
        if job is not None:
            job["status"] = "SUCCEEDED"
            job["end_time"] = time.time()

    def kv_put(self, namespace: str, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        slot = (namespace, key)
        if slot in self.kv and not overwrite:
            return False
        self.kv[slot] = value
        return True

    def kv_get(self, namespace: str, key: bytes) -> bytes | None:
        return self.kv.get((namespace, key))

    def kv_delete(self, namespace: str, key: bytes) -> bool:
        return self.kv.pop((namespace, key), None) is not None
