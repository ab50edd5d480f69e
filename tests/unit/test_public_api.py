"""The public surface of `shoal`: exactly the names pinned here, and a light `import shoal`.

Adding a public name means adding it to `runtime/__init__.py`'s `__all__` and to EXPECTED_ALL,
in sorted order; the two lists are compared as they are, order included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import shoal

EXPECTED_ALL = [
    "Actor",
    "ActorID",
    "JobID",
    "NodeID",
    "ObjectID",
    "ObjectRef",
    "PlacementGroupID",
    "TaskID",
    "WorkerID",
    "__version__",
    "actor",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "util",
    "wait",
]

# Imported lazily by the library that needs them, never by `import shoal`.
HEAVY_MODULES = ["IPython", "ipywidgets", "numpy", "pandas", "pyarrow", "torch"]

IMPORT_WALL_LIMIT_S = 2.0

_REPORT_IMPORTS = """
import json, sys
import shoal
heavy = json.loads(sys.argv[1])
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in heavy)))
"""


def test_expected_all_is_sorted_and_unique():
    assert EXPECTED_ALL == sorted(set(EXPECTED_ALL))


def test_all_is_pinned():
    assert list(shoal.__all__) == EXPECTED_ALL


def test_every_name_in_all_exists():
    missing = [name for name in shoal.__all__ if not hasattr(shoal, name)]
    assert missing == []


def test_import_is_light_and_fast(tmp_path):
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", _REPORT_IMPORTS, json.dumps(HEAVY_MODULES)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    wall_s = time.perf_counter() - started
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == [], "import shoal pulled in heavy modules"
    assert wall_s < IMPORT_WALL_LIMIT_S, f"a fresh interpreter took {wall_s:.2f} s to import shoal"
