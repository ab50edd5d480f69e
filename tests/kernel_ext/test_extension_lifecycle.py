"""`%load_ext shoal` starts nothing; the cluster starts on first use or `%shoal init`; unload and
reload leave no thread behind. Each test owns any cluster it starts."""

from __future__ import annotations

import threading

import pytest
import shoal
from IPython.core.error import UsageError

pytestmark = pytest.mark.integration


def thread_names() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


@pytest.fixture
def loaded(ipython_shell):
    ipython_shell.run_line_magic("load_ext", "shoal")
    yield ipython_shell
    ipython_shell.run_line_magic("unload_ext", "shoal")
    if shoal.is_initialized():
        shoal.shutdown()


def test_load_registers_magics_and_starts_nothing(ipython_shell):
    before = thread_names()
    ipython_shell.run_line_magic("load_ext", "shoal")
    try:
        magics = ipython_shell.magics_manager.magics
        assert {"remote", "remote_reset", "shoal"} <= set(magics["line"])
        assert "remote" in magics["cell"]
        assert not shoal.is_initialized()
        assert "not connected" in repr(ipython_shell.run_line_magic("shoal", "status"))
        assert thread_names() == before
    finally:
        ipython_shell.run_line_magic("unload_ext", "shoal")
    assert "remote" not in ipython_shell.magics_manager.magics["cell"]
    assert "shoal" not in ipython_shell.magics_manager.magics["line"]


def test_reload_and_unload_leave_no_threads(ipython_shell):
    before = thread_names()
    ipython_shell.run_line_magic("load_ext", "shoal")
    ipython_shell.run_line_magic("reload_ext", "shoal")
    assert "remote" in ipython_shell.magics_manager.magics["cell"]
    ipython_shell.run_line_magic("unload_ext", "shoal")
    assert thread_names() == before
    assert not shoal.is_initialized()


def test_first_use_starts_the_cluster_and_shutdown_stops_it(loaded):
    assert loaded.run_line_magic("remote", "2 + 3") == 5
    assert shoal.is_initialized()
    assert loaded.run_line_magic("shoal", "shutdown") is None
    assert not shoal.is_initialized()


def test_after_shoal_shutdown_a_get_still_delivers_async_cells_and_unload_leaves_no_listener(loaded):
    from shoal._core import session
    from shoal.kernel_ext.async_cells import AsyncCellWatcher
    from shoal.kernel_ext.magics import ShoalMagics

    def magics_listeners() -> list:
        owners = [getattr(listener, "__self__", None) for listener in session.hooks.wait_listeners]
        return [owner for owner in owners if isinstance(owner, (ShoalMagics, AsyncCellWatcher))]

    loaded.run_line_magic("shoal", "init --num-cpus 1")
    loaded.run_line_magic("shoal", "shutdown")  # the magics start a new async cell watcher
    loaded.user_ns.update(shoal=shoal, after_restart=None)
    loaded.run_cell_magic("remote", "--async", "import time\ntime.sleep(0.3)\nafter_restart = 1\n")
    result = loaded.run_cell("shoal.get(_remote)\nseen_after_restart = after_restart")
    assert result.success and loaded.user_ns["seen_after_restart"] == 1, "the new watcher hears the get"
    assert len(magics_listeners()) == 1
    loaded.run_line_magic("unload_ext", "shoal")
    assert magics_listeners() == []
    loaded.run_line_magic("load_ext", "shoal")


def test_async_cell_then_unload_stops_the_watcher(loaded):
    loaded.run_cell_magic("remote", "--async --no-push", "import time\ntime.sleep(0.5)\n")
    loaded.run_line_magic("unload_ext", "shoal")
    assert "shoal-remote-cell-wait" not in thread_names()
    loaded.run_line_magic("load_ext", "shoal")


def test_shoal_init_with_options(loaded):
    context = loaded.run_line_magic("shoal", "init --num-cpus 1")
    assert shoal.cluster_resources()["CPU"] == 1
    assert "address" in context._repr_html_()
    with pytest.raises(UsageError, match="--bogus"):
        loaded.run_line_magic("shoal", "init --bogus")
    with pytest.raises(UsageError, match="--num-cpus"):
        loaded.run_line_magic("shoal", "init --num-cpus lots")


def test_commands_that_need_a_cluster_say_so(loaded):
    with pytest.raises(UsageError, match="no cluster is running"):
        loaded.run_line_magic("shoal", "tasks")
    with pytest.raises(UsageError, match="no actor namespace"):
        loaded.run_line_magic("remote_reset", "anything")


def test_the_contexts_status_hint_works_where_it_is_shown(ipython_shell, monkeypatch, tmp_path):
    import os
    import sys

    from shoal.init_context import RayContext

    context = RayContext({"address": "ipc:///nowhere/node.sock"})  # not connected: its rows ask nothing

    def hint() -> str:
        return dict(context.rows())["dashboard"]

    monkeypatch.setenv("PATH", str(tmp_path))  # no `shoal` command on it
    assert hint() == "`%load_ext shoal`, then `%shoal status`"
    ipython_shell.run_line_magic("load_ext", "shoal")
    try:
        assert hint() == "`%shoal status`"
        command = tmp_path / "shoal"
        command.write_text("#!/bin/sh\n")
        command.chmod(0o755)
        assert hint() == "`%shoal status`, or `!shoal status`"
        command.unlink()
        # Outside IPython: the command, by its full path when it is not on PATH.
        monkeypatch.delitem(sys.modules, "IPython")
        beside = os.path.join(os.path.dirname(sys.executable), "shoal")  # pip installed it there
        assert hint() == f"run `{beside} status` in a terminal"
    finally:
        monkeypatch.undo()
        ipython_shell.run_line_magic("unload_ext", "shoal")
