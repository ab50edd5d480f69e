"""`make lab` starts JupyterLab, as root too: its own recipe, run through make, answers over HTTP,
with the venv's lab settings (widget state saved with notebooks).

Only lab's command line runs: VENV points make at the environment running this test and
`VENV_STAMP=` drops the venv prerequisite, so make builds nothing. LAB_ARGS adds what a test
needs (no browser, a free port on 127.0.0.1, a known token) and the Jupyter directories are
private to the test. The server runs in a process group of its own and is stopped by it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90
HTTP_TIMEOUT_S = 15
STOP_TIMEOUT_S = 30
# make passes its own command-line variables and jobserver to sub-makes through these; the make
# started here must see only its own.
MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def _group_members(pgid: int) -> list[int]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return members


def _stop_group(make: subprocess.Popen) -> None:
    """SIGTERM to the whole group (make and the server), SIGKILL if it outlives STOP_TIMEOUT_S."""
    try:
        os.killpg(make.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        make.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    if _group_members(make.pid):
        os.killpg(make.pid, signal.SIGKILL)
        make.wait(timeout=STOP_TIMEOUT_S)


@pytest.mark.timeout(START_TIMEOUT_S + HTTP_TIMEOUT_S + 3 * STOP_TIMEOUT_S)
def test_make_lab_serves_jupyterlab(tmp_path):
    token = secrets.token_hex(16)
    runtime_dir = tmp_path / "runtime"
    lab_args = (
        f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=0 --ServerApp.port_retries=0"
        f" --IdentityProvider.token={token}"
    )
    env = {name: value for name, value in os.environ.items() if name not in MAKE_ENV}
    env.update(
        JUPYTER_RUNTIME_DIR=str(runtime_dir),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
    )
    log_path = tmp_path / "make-lab.log"
    command = ["make", "--no-print-directory", "lab", f"VENV={sys.prefix}", "VENV_STAMP=", f"LAB_ARGS={lab_args}"]
    with open(log_path, "wb") as log:
        make = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )

    def describe() -> str:
        state = "running" if make.poll() is None else f"exited {make.returncode}"
        return f"make lab {state}; its output:\n{log_path.read_text(errors='replace')}"

    def server_info() -> dict | None:
        if make.poll() is not None:
            raise AssertionError(describe())
        for info_file in runtime_dir.glob("jpserver-*.json"):
            try:
                return json.loads(info_file.read_text())
            except json.JSONDecodeError:  # being written
                return None
        return None

    try:
        info = wait_for(server_info, START_TIMEOUT_S, describe)
        assert info["token"] == token, describe()
        # No proxy: the server is on this machine, whatever the environment says about proxies.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{info['port']}/lab?token={token}", timeout=HTTP_TIMEOUT_S) as response:
            status, page = response.status, response.read().decode(errors="replace")
        assert status == 200, describe()
        assert "<title>JupyterLab</title>" in page, page[:2000]
        # The venv's lab settings: widget state is saved with a notebook (a live view reopens).
        settings_url = f"http://127.0.0.1:{info['port']}/lab/api/settings/@jupyter-widgets/jupyterlab-manager:plugin"
        with opener.open(f"{settings_url}?token={token}", timeout=HTTP_TIMEOUT_S) as response:
            widget_settings = json.loads(response.read())
        # The server sends the schema with the overridden default; the page merges it with the user's settings.
        assert widget_settings["schema"]["properties"]["saveState"]["default"] is True, widget_settings
        assert widget_settings["settings"].get("saveState", True) is True, widget_settings
        assert info["root_dir"] == str(REPO_ROOT / "notebooks"), info
    finally:
        _stop_group(make)
    wait_for(lambda: not _group_members(make.pid), STOP_TIMEOUT_S, describe)
