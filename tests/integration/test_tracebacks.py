"""A script's remote errors point at the script: its file and line, as a local error would."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import shoal as ray

    @ray.remote
    def divide(a, b):
        return a / b

    ray.init(num_cpus=1)
    try:
        ray.get(divide.remote(1, 0))
    except ZeroDivisionError as error:
        print(error)
    finally:
        ray.shutdown()
    """
)


def test_a_script_function_names_the_script_and_line(tmp_path):
    script = tmp_path / "divide_script.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = SCRIPT.splitlines().index("    return a / b") + 1
    assert f'File "{script}", line {line}, in divide' in done.stdout, done.stdout
    assert "return a / b" in done.stdout
