"""`RayContext`: what `shoal.init()` returns, and how it shows itself in a terminal or notebook.

Owns the presentation of the connection (versions, address, node, cluster totals, how to connect
from elsewhere). The cluster totals are asked of the node manager when the repr is drawn, with a
short timeout; a context whose session has ended shows what it recorded at `init()`.
No IPython here: the reprs are plain strings.
"""

from __future__ import annotations

import html
import os
import shutil
import sys

REPR_QUERY_TIMEOUT_S = 5.0


class RayContext(dict):
    """What `init()` returns: the cluster's address info, usable as a context manager.

    In a notebook it renders as a small table (versions, address, node, cluster totals and how
    to connect from another process); `print(context)` gives the same as text.
    """

    def __init__(self, info: dict):
        super().__init__(info)
        self.address_info = info
        self.dashboard_url = None
        self.python_version = ".".join(map(str, sys.version_info[:3]))
        from . import __version__

        self.ray_version = self.shoal_version = __version__
        self.ray_commit = "shoal"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        from . import api

        api.shutdown()

    def disconnect(self) -> None:
        from . import api

        api.shutdown()

    # -- what to show ------------------------------------------------------------------------

    def _connected(self) -> bool:
        from ._core import session

        running = session.current()
        return running is not None and running.client.endpoint == self.address_info.get("address")

    def _cluster_totals(self) -> tuple[int | None, dict]:
        """(alive nodes, total resources): asked live when connected, else recorded at init."""
        if self._connected():
            from ._core import session
            from ._core.protocol import ClusterInfoRequest

            try:
                client = session.client()
                reply = client.request(
                    lambda request_id: ClusterInfoRequest(request_id), timeout_s=REPR_QUERY_TIMEOUT_S
                )
            except Exception:  # a repr must never raise; fall back to what init recorded
                reply = None
            if reply is not None:
                alive = sum(1 for node in reply.nodes if node.get("Alive", True))
                return alive, dict(reply.total)
        return None, dict(self.address_info.get("resources", {}))

    def rows(self) -> list[tuple[str, str]]:
        """The (label, value) rows both reprs show."""
        info = self.address_info
        connected = self._connected()
        node_count, totals = self._cluster_totals()
        address = info.get("address") or ""
        rows = [
            ("shoal version", self.shoal_version),
            ("Python version", self.python_version),
            ("status", "connected" if connected else "disconnected (shoal.shutdown() was called)"),
            ("address", address),
            ("node id", info.get("node_id") or ""),
            ("nodes", str(node_count) if node_count is not None else "?"),
            ("CPUs", _amount(totals.get("CPU", 0))),
            ("GPUs", _amount(totals.get("GPU", 0))),
            ("object store memory", _bytes(totals.get("object_store_memory", 0))),
            ("namespace", info.get("namespace") or ""),
            ("dashboard", _status_hint()),
            ("connect from another process", f'shoal.init(address="{_connect_address(address)}")'),
        ]
        custom = sorted(
            name
            for name in totals
            if name not in ("CPU", "GPU", "memory", "object_store_memory") and not name.startswith("node:")
        )
        if custom:
            rows.insert(9, ("custom resources", ", ".join(f"{name}: {_amount(totals[name])}" for name in custom)))
        return rows

    # -- reprs -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        info = self.address_info
        return (
            f"RayContext(address={info.get('address')!r}, node_id={info.get('node_id')!r}, "
            f"namespace={info.get('namespace')!r}, session_dir={info.get('session_dir')!r})"
        )

    def __str__(self) -> str:
        rows = self.rows()
        width = max(len(label) for label, _ in rows)
        lines = ["shoal cluster (Ray-compatible)"]
        lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(repr(self) if cycle else str(self))

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td style='text-align:left'><b>{html.escape(label)}</b></td>"
            f"<td style='text-align:left'>{_html_value(label, value)}</td></tr>"
            for label, value in self.rows()
        )
        return (
            "<div class='shoal-context'>"
            "<h3 style='margin:0.2em 0'>shoal cluster <small>(Ray-compatible)</small></h3>"
            f"<table class='shoal-context-table'>{body}</table></div>"
        )


def _status_hint() -> str:
    """How to see the cluster's status from where this repr is shown; every hint there works.

    In IPython: `%shoal status` (after `%load_ext shoal` when the extension is not loaded), and
    `!shoal status` when the `shoal` command is on this process's PATH. Elsewhere: the `shoal`
    command, by its full path when it is not on PATH.
    """
    command = shutil.which("shoal")
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        loaded = "shoal" in getattr(getattr(shell, "extension_manager", None), "loaded", ())
        hint = "`%shoal status`" if loaded else "`%load_ext shoal`, then `%shoal status`"
        return f"{hint}, or `!shoal status`" if command else hint
    if command is None:
        beside = os.path.join(os.path.dirname(sys.executable), "shoal")
        if os.path.exists(beside):
            return f"run `{beside} status` in a terminal"
    return "run `shoal status` in a terminal"


def _html_value(label: str, value: str) -> str:
    escaped = html.escape(value)
    if "`" in value:
        return _code_spans(escaped)
    if label in ("address", "node id", "connect from another process"):
        return f"<code>{escaped}</code>"
    return escaped


def _code_spans(text: str) -> str:
    parts = text.split("`")
    return "".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts))


def _connect_address(endpoint: str) -> str:
    """The address another process passes to `shoal.init`: host:port for TCP, else as given."""
    if endpoint.startswith("tcp://"):
        return endpoint[len("tcp://") :]
    return endpoint or "auto"


def _amount(value) -> str:
    return f"{float(value):g}"


def _bytes(size_bytes) -> str:
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"
