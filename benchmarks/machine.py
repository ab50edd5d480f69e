"""Machine and version facts, and the processes a runtime started: their memory and cleanup.

A runtime's processes are found as psutil descendants of the driver and (Linux, /proc) as its
RunScope: the runner starts each child as a session leader with a run id in its environment, so
a daemon that called setsid or was re-parented away from the driver is still counted, still
reported if it outlives the child, and still terminated. Memory needs psutil (imported where
used); discovery and cleanup do not.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

MB = 10**6
RUN_ID_ENV = "BENCHMARKS_RUN_ID"  # set by the runner in each child's environment

_VERSIONS_SCRIPT = """
import importlib.metadata as metadata, json, platform, sys
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
packages = {name: version(name) for name in ("shoal", "ray", "numpy", "psutil")}
print(json.dumps({"python": platform.python_version(), "executable": sys.executable,
                  "packages": packages}))
"""


def describe_machine() -> dict:
    """Cores, memory, platform and CPU model of this machine."""
    info = {
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cores_physical": None,
        "memory_total_bytes": None,
        "shm_total_bytes": shutil.disk_usage("/dev/shm").total if os.path.isdir("/dev/shm") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "load_avg_1m_5m_15m": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import psutil

        info["cores_physical"] = psutil.cpu_count(logical=False)
        info["memory_total_bytes"] = psutil.virtual_memory().total
    except ImportError:
        if hasattr(os, "sysconf"):
            info["memory_total_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def interpreter_versions(python: str, cwd: str | None = None, timeout_s: float = 60.0) -> dict:
    """Python and package versions of another interpreter (run in `cwd`), without importing them."""
    try:
        completed = subprocess.run(
            [python, "-c", _VERSIONS_SCRIPT],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"error": f"{type(error).__name__}: {error}"}
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {completed.returncode}"}
    return json.loads(completed.stdout)


@dataclass
class ProcessMemory:
    """Memory summed over a driver and the processes its runtime started."""

    pss_mb: float = 0.0
    rss_mb: float = 0.0
    uss_mb: float = 0.0
    processes: int = 0
    # Found through the run's session or run id but no longer the driver's descendants.
    reparented: int = 0
    by_process: dict[str, dict] = field(default_factory=dict)


def runtime_pids(driver_pid: int) -> tuple[list[int], list[int]]:
    """(the driver and its descendants, the other processes of its benchmark run, if any)."""
    import psutil

    family = {driver_pid}
    family.update(child.pid for child in psutil.Process(driver_pid).children(recursive=True))
    scope = RunScope.of_this_process()
    others = set(scope.pids()) - family if scope is not None else set()
    return sorted(family), sorted(others)


def process_memory(driver_pid: int) -> ProcessMemory:
    """PSS (shared pages split between sharers), RSS and USS summed over `runtime_pids`.

    RSS double-counts pages shared between processes; PSS is the honest total.
    """
    import psutil

    usage = ProcessMemory()
    family, reparented = runtime_pids(driver_pid)
    for pid in family + reparented:
        try:
            process = psutil.Process(pid)
            memory = process.memory_full_info()
            label = "driver" if pid == driver_pid else _label(process)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        usage.processes += 1
        usage.reparented += pid in reparented
        usage.pss_mb += memory.pss / MB
        usage.rss_mb += memory.rss / MB
        usage.uss_mb += memory.uss / MB
        entry = usage.by_process.setdefault(label, {"count": 0, "pss_mb": 0.0, "rss_mb": 0.0})
        entry["count"] += 1
        entry["pss_mb"] += memory.pss / MB
        entry["rss_mb"] += memory.rss / MB
    return usage


def _label(process) -> str:
    """A short name: the executable, or for Python processes the script or module they run."""
    name = process.name()
    if name.startswith("python"):
        arguments = iter(process.cmdline()[1:])
        for argument in arguments:
            if argument == "-m":
                return f"python -m {next(arguments, '')}"
            if not argument.startswith("-"):
                return f"python {os.path.basename(argument)}"
    return name


@dataclass(frozen=True)
class RunScope:
    """The processes of one benchmark child: its session, and whatever carries its run id.

    A runtime may start daemons in a session of their own (setsid) or see them re-parented;
    they still inherit the environment, where the runner put RUN_ID_ENV=run_id.
    """

    session_id: int
    run_id: str

    @classmethod
    def of_this_process(cls) -> RunScope | None:
        run_id = os.environ.get(RUN_ID_ENV)
        return cls(os.getsid(0), run_id) if run_id else None

    def pids(self) -> list[int]:
        """Live (non-zombie) processes of the run, from /proc; [] where there is no /proc."""
        if not os.path.isdir("/proc"):
            return []
        marker = f"{RUN_ID_ENV}={self.run_id}".encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat_file:
                    stat = stat_file.read()
                # Fields after the parenthesised command: state ppid pgrp session ...
                fields = stat[stat.rindex(")") + 2 :].split()
                if fields[0] == "Z":
                    continue
                if int(fields[3]) == self.session_id:
                    pids.append(int(entry))
                    continue
                with open(f"/proc/{entry}/environ", "rb") as environ_file:
                    if marker in environ_file.read().split(b"\0"):
                        pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
        return pids

    def wait_for_exit(self, timeout_s: float) -> list[int]:
        """Poll until no process of the run is left or `timeout_s` passes; the pids left."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = self.pids()
            if not remaining or time.monotonic() >= deadline:
                return remaining
            time.sleep(0.1)

    def terminate(self, grace_s: float = 3.0) -> list[int]:
        """SIGTERM the run's processes, SIGKILL what is left after `grace_s`; the pids seen."""
        seen = set(self.pids())
        for pid in seen:
            _signal(pid, signal.SIGTERM)
        remaining = self.wait_for_exit(grace_s)
        # A dying process tree can still fork: kill again until nothing of the run is left.
        for _ in range(10):
            if not remaining:
                break
            seen.update(remaining)
            for pid in remaining:
                _signal(pid, signal.SIGKILL)
            remaining = self.wait_for_exit(1.0)
        return sorted(seen)


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return "?"


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
