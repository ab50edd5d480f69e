"""(6) A driver SIGKILLed in the middle of a job leaves nothing behind: no process, no session
directory, no shared memory. Repeated; each driver is a fresh interpreter started here.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys

import psutil
from shoal._core.node_launcher import read_until

from tests import leaks
from tests.reliability import faults

START_TIMEOUT_S = 60.0
CLEANUP_TIMEOUT_S = 10.0

DRIVER = """
import json, os, time
import numpy as np, psutil, shoal

shoal.init(num_cpus=2, object_store_memory=128 * 1024 * 1024)

@shoal.remote
def slow(index):
    time.sleep(0.05)
    return np.full(200_000, index % 251, dtype=np.uint8)  # in the shared store

@shoal.remote
class Holder:
    def __init__(self):
        self.kept = np.ones(1_000_000)
    def ping(self):
        return os.getpid()

holder = Holder.remote()
big = shoal.put(np.zeros(20_000_000, dtype=np.uint8))
refs = [slow.remote(index) for index in range(10_000)]
shoal.get(holder.ping.remote())
shoal.wait(refs, num_returns=10)
family = [process.pid for process in psutil.Process().children(recursive=True)]
print(json.dumps({"pids": family}), flush=True)
print("MID-JOB", flush=True)
shoal.get(refs)
"""


def _session_dirs() -> set[str]:
    root = leaks.session_root()
    return {name for name in os.listdir(root) if name.startswith("session_")} if os.path.isdir(root) else set()


def _shm() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("shoal")}


def _all_gone(pids) -> bool:
    return not any(faults.alive(pid) for pid in pids)


def _nothing_new(sessions_before: set, shm_before: set) -> bool:
    return not (_session_dirs() - sessions_before) and not (_shm() - shm_before)


def test_sigkilled_drivers_leave_nothing_behind(chaos_scale, figures):
    figures.input_kind = "driver SIGKILLs"
    figures.parameters = {"drivers": chaos_scale.driver_kills, "mid_job": "10,000 tasks queued, an actor, a 20 MB put"}
    for _ in range(chaos_scale.driver_kills):
        sessions_before, shm_before = _session_dirs(), _shm()
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            output = read_until(driver, "MID-JOB", START_TIMEOUT_S, "the driver did not reach its job")
            assert "MID-JOB" in output, f"the driver exited ({driver.wait()}): {driver.stderr.read().decode()}"
            family = json.loads(output.splitlines()[0])["pids"]
            new_sessions = _session_dirs() - sessions_before
            assert len(family) >= 4 and new_sessions, (family, new_sessions)  # node manager, template, 2+ workers
            driver.send_signal(signal.SIGKILL)
            assert driver.wait(timeout=10) == -signal.SIGKILL
            figures.inputs += 1
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
            driver.stdout.close()
            driver.stderr.close()
        gone = faults.poll(functools.partial(_all_gone, family), CLEANUP_TIMEOUT_S)
        cleaned = faults.poll(functools.partial(_nothing_new, sessions_before, shm_before), CLEANUP_TIMEOUT_S)
        figures.results += 1
        figures.correct += gone and cleaned
        if not (gone and cleaned):
            left = [pid for pid in family if faults.alive(pid)]
            figures.note(f"left: pids {left}, sessions {_session_dirs() - sessions_before}, shm {_shm() - shm_before}")
            for pid in left:
                psutil.Process(pid).kill()
    assert figures.correct == figures.results == chaos_scale.driver_kills, figures.notes
