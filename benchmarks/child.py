"""One benchmark run in a fresh process: `python -m benchmarks.child --impl ray --workload init`.

Imports the implementation as `ray` (timing the import), runs one workload, and prints ONE JSON
line on stdout for the parent (benchmarks.core) to parse. Only the standard library is imported
before the implementation, so import_s is the implementation's own cost.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import sys
import time
import traceback

# Implementation name -> the module imported as `ray`. "mp" imports none: benchmarks.baselines.
IMPLEMENTATION_MODULES = {"shoal": "shoal", "ray": "ray"}
BASELINE = "mp"


def run(impl: str, workload: str, smoke: bool) -> dict:
    """Run one workload; the metrics dict, with details under "details"."""
    if impl == BASELINE:
        from benchmarks.baselines import BASELINES

        return BASELINES[workload](smoke)
    start = time.perf_counter()
    module = importlib.import_module(IMPLEMENTATION_MODULES[impl])
    import_s = time.perf_counter() - start
    from benchmarks.workloads import WORKLOADS

    metrics = WORKLOADS[workload](module, smoke)
    if workload == "init":
        metrics = {"import_s": import_s, **metrics}
    metrics.setdefault("details", {})["import_s"] = import_s
    return metrics


def _versions(impl: str) -> dict:
    versions = {"python": sys.version.split()[0]}
    module = sys.modules.get(IMPLEMENTATION_MODULES.get(impl, ""))
    if module is not None:
        versions[impl] = getattr(module, "__version__", None)
    try:
        versions["numpy"] = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        versions["numpy"] = None
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", required=True, choices=[*IMPLEMENTATION_MODULES, BASELINE])
    parser.add_argument("--workload", required=True)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    record: dict = {"impl": args.impl, "workload": args.workload, "smoke": args.smoke}
    start = time.perf_counter()
    try:
        metrics = run(args.impl, args.workload, args.smoke)
        record["details"] = metrics.pop("details", {})
        record["metrics"] = metrics
        record["ok"] = True
    except BaseException as error:  # noqa: BLE001 - every failure is reported, none crashes the run
        record["ok"] = False
        record["error"] = f"{type(error).__name__}: {error}"[:500]
        record["traceback"] = traceback.format_exc()[-4000:]
    record["child_s"] = time.perf_counter() - start
    record["versions"] = _versions(args.impl)
    print(json.dumps(record), flush=True)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
