"""Fixtures for tests against real local clusters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import shoal


@pytest.fixture(scope="module")
def cluster():
    """One embedded 2-CPU cluster per test module."""
    context = shoal.init(num_cpus=2, num_gpus=2, resources={"custom": 1}, object_store_memory=256 * 1024 * 1024)
    yield context
    shoal.shutdown()


@pytest.fixture
def run_script(tmp_path):
    """Run a Python script in a fresh interpreter; returns CompletedProcess (text)."""

    def run(source: str, timeout_s: float = 60, env: dict | None = None, check: bool = True):
        path = tmp_path / "script.py"
        path.write_text(textwrap.dedent(source))
        full_env = dict(os.environ)
        full_env.update(env or {})
        result = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, timeout=timeout_s, env=full_env, cwd=tmp_path
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"script failed ({result.returncode}):\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr}"
            )
        return result

    return run
