"""What a test module may leave behind, and the check that it left nothing.

Looks for: a cluster still initialized, processes this test run started, `shoal-*` threads,
new `/dev/shm/shoal*` entries and new session directories under `<tmp>/shoal-<uid>/`.
It kills only processes of this run (descendants of the pytest process, or processes that carry
this run's id in their environment) and removes only session directories that appeared during
the module; it never touches anything else on the machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass

import psutil

from tests.waiting import poll_until

RUN_ID_ENV = "SHOAL_TEST_RUN_ID"
"""Set by conftest for the whole run; every process the run starts inherits it, so one that
outlived its parent (and was re-parented away from pytest) is still recognised as ours."""

SHM_DIR = "/dev/shm"


def new_run_id() -> str:
    return uuid.uuid4().hex


def session_root() -> str:
    """Where the runtime puts session directories (honours TMPDIR, as the runtime does)."""
    return os.path.join(tempfile.gettempdir(), f"shoal-{os.getuid()}")


@dataclass(frozen=True)
class ResourceSnapshot:
    """Machine-wide names seen before a module ran; anything new afterwards is the module's."""

    shm_names: frozenset[str]
    session_dirs: frozenset[str]


def take_snapshot() -> ResourceSnapshot:
    return ResourceSnapshot(_shm_names(), _session_dirs())


def _shm_names() -> frozenset[str]:
    try:
        return frozenset(name for name in os.listdir(SHM_DIR) if name.startswith("shoal"))
    except FileNotFoundError:
        return frozenset()


def _session_dirs() -> frozenset[str]:
    try:
        return frozenset(name for name in os.listdir(session_root()) if name.startswith("session_"))
    except FileNotFoundError:
        return frozenset()


def _interpreter_helper_pids() -> set[int]:
    """multiprocessing's per-interpreter helpers: started once, kept for the whole run by design."""
    pids = set()
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    if tracker is not None:
        pids.add(getattr(tracker._resource_tracker, "_pid", None))
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is not None:
        pids.add(getattr(forkserver._forkserver, "_forkserver_pid", None))
    pids.discard(None)
    return pids


def _carries_run_id(process: psutil.Process, run_id: str) -> bool:
    try:
        return process.environ().get(RUN_ID_ENV) == run_id
    except (psutil.Error, OSError):
        return False


def _live(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_processes(run_id: str) -> list[psutil.Process]:
    """Live processes this run started, other than pytest itself and multiprocessing's helpers."""
    me = psutil.Process()
    found = {process.pid: process for process in me.children(recursive=True)}
    uid = os.getuid()
    for process in psutil.process_iter(["uids"]):
        uids = process.info["uids"]
        if process.pid not in found and uids is not None and uids.real == uid:
            if _carries_run_id(process, run_id):
                found[process.pid] = process
    excluded = _interpreter_helper_pids() | {me.pid}
    return [process for pid, process in sorted(found.items()) if pid not in excluded and _live(process)]


def _describe_process(process: psutil.Process) -> str:
    try:
        command = " ".join(process.cmdline()) or process.name()
        return f"pid {process.pid} (parent {process.ppid()}): {command}"
    except psutil.Error as error:
        return f"pid {process.pid}: {type(error).__name__}"


def _shoal_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("shoal") and thread.is_alive()]


def _shutdown_if_initialized() -> list[str]:
    shoal = sys.modules.get("shoal")
    is_initialized = getattr(shoal, "is_initialized", None)
    if is_initialized is None or not is_initialized():
        return []
    problems = ["shoal.is_initialized() was still True: the module called shoal.init() without shoal.shutdown()"]
    try:
        shoal.shutdown()
    except Exception as error:  # report it with the leak rather than hide the leak behind it
        problems.append(f"shoal.shutdown() after the module raised {error!r}")
    return problems


def check_nothing_left(before: ResourceSnapshot, run_id: str, timeout_s: float) -> list[str]:
    """Wait up to `timeout_s` for the module's resources to go, then clean up and report the rest.

    Returns:
        One line per problem; empty when the module left nothing behind. Leftover processes are
        killed by pid and leftover session directories removed, so one module's leak is not
        reported again against the next module.
    """
    problems = _shutdown_if_initialized()

    def leftovers():
        processes = run_processes(run_id)
        threads = _shoal_threads()
        shm = _shm_names() - before.shm_names
        sessions = _session_dirs() - before.session_dirs
        return processes, threads, shm, sessions

    def all_gone() -> bool:
        return not any(leftovers())

    poll_until(all_gone, timeout_s)
    processes, threads, shm, sessions = leftovers()
    if processes:
        problems.append(f"{len(processes)} process(es) still running {timeout_s:g} s after teardown (killed):")
        problems.extend(f"  {_describe_process(process)}" for process in processes)
        _kill(processes)
    if threads:
        problems.append("threads still alive: " + ", ".join(sorted(thread.name for thread in threads)))
    if shm:
        problems.append(f"new entries in {SHM_DIR}: " + ", ".join(sorted(shm)))
    if sessions:
        root = session_root()
        problems.append(f"session directories left under {root} (removed): " + ", ".join(sorted(sessions)))
        for name in sessions:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return problems


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()  # psutil checks the pid still names the same process (create time)
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=5)
