"""Every SHOAL_* environment variable and tunable, read in one place.

Nothing else in shoal reads os.environ for configuration.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

INLINE_OBJECT_MAX_BYTES = 100 * 1024
"""Values up to this size travel inside messages; larger ones go to the shared arena."""


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None


def _env_int(name: str, default: int) -> int:
    return int(_env_float(name, default))


@dataclass(frozen=True)
class RuntimeConfig:
    """Tunables shared by the node manager, workers and clients."""

    inline_object_max_bytes: int = INLINE_OBJECT_MAX_BYTES
    head_start_timeout_s: float = 30.0
    worker_idle_timeout_s: float = 30.0
    max_workers: int = 256
    pipeline_depth: int = 32
    fast_task_threshold_s: float = 0.002
    log_flush_interval_s: float = 0.05
    parent_check_interval_s: float = 0.5  # also the event stream's snapshot interval
    shutdown_timeout_s: float = 5.0
    allocation_wait_s: float = 5.0  # how long a put waits for readers to release the store
    task_history: int = 10_000  # finished tasks the state API can list
    max_message_bytes: int = 4 * 1024**3  # largest frame an authenticated peer may send over TCP
    handshake_timeout_s: float = 5.0  # a TCP connection not authenticated by then is closed
    max_unauthenticated_connections: int = 128  # TCP connections still in the handshake, in all
    max_unauthenticated_per_host: int = 16  # ... and from any one address
    prestart_workers: bool = True
    node_timeout_s: float = 10.0  # a node silent this long is dead (the head, too, for the others)
    connect_timeout_s: float = 30.0  # how long a driver waits for the node manager to answer its registration
    pull_chunk_timeout_s: float = 10.0  # a chunk of an object pulled from another node not here by then is asked again
    pull_chunk_attempts: int = 6  # ... this many times in all; then the copy counts as unreachable
    crash_logs_keep: int = 20  # crashed nodes' log directories kept: the newest this many ...
    crash_logs_max_age_days: float = 14.0  # ... and none older than this


def load_config() -> RuntimeConfig:
    return RuntimeConfig(
        inline_object_max_bytes=_env_int("SHOAL_INLINE_OBJECT_MAX_BYTES", INLINE_OBJECT_MAX_BYTES),
        head_start_timeout_s=_env_float("SHOAL_HEAD_START_TIMEOUT_S", 30.0),
        worker_idle_timeout_s=_env_float("SHOAL_WORKER_IDLE_TIMEOUT_S", 30.0),
        max_workers=_env_int("SHOAL_MAX_WORKERS", 256),
        pipeline_depth=_env_int("SHOAL_PIPELINE_DEPTH", 32),
        log_flush_interval_s=_env_float("SHOAL_LOG_FLUSH_INTERVAL_S", 0.05),
        shutdown_timeout_s=_env_float("SHOAL_SHUTDOWN_TIMEOUT_S", 5.0),
        allocation_wait_s=_env_float("SHOAL_ALLOCATION_WAIT_S", 5.0),
        node_timeout_s=_env_float("SHOAL_NODE_TIMEOUT_S", 10.0),
        max_message_bytes=_env_int("SHOAL_MAX_MESSAGE_BYTES", 4 * 1024**3),
        handshake_timeout_s=_env_float("SHOAL_HANDSHAKE_TIMEOUT_S", 5.0),
        max_unauthenticated_connections=_env_int("SHOAL_MAX_UNAUTHENTICATED_CONNECTIONS", 128),
        max_unauthenticated_per_host=_env_int("SHOAL_MAX_UNAUTHENTICATED_PER_HOST", 16),
        connect_timeout_s=_env_float("SHOAL_CONNECT_TIMEOUT_S", 30.0),
        pull_chunk_timeout_s=_env_float("SHOAL_PULL_CHUNK_TIMEOUT_S", 10.0),
        pull_chunk_attempts=max(1, _env_int("SHOAL_PULL_CHUNK_ATTEMPTS", 6)),
        crash_logs_keep=max(0, _env_int("SHOAL_CRASH_LOGS_KEEP", 20)),
        crash_logs_max_age_days=_env_float("SHOAL_CRASH_LOGS_MAX_AGE_DAYS", 14.0),
    )


def temp_root() -> str:
    """Where session directories live: under the system temp dir, honouring TMPDIR."""
    return os.path.join(tempfile.gettempdir(), f"shoal-{os.getuid()}")


def cluster_token() -> str | None:
    return os.environ.get("SHOAL_TOKEN") or None


def noninteractive() -> bool:
    return os.environ.get("SHOAL_NONINTERACTIVE", "") not in ("", "0")


def default_object_store_bytes() -> int:
    """30% of memory, capped by what /dev/shm can hold, as Ray does."""
    import psutil

    total = psutil.virtual_memory().total
    size = int(total * 0.3)
    try:
        stat = os.statvfs("/dev/shm")
        size = min(size, int(stat.f_bavail * stat.f_frsize * 0.8))
    except OSError:
        pass
    return max(size, 64 * 1024 * 1024)
