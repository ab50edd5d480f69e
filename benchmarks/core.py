"""Benchmark runner: shoal against Ray and a bare multiprocessing baseline, same workload code.

    python -m benchmarks.core --impl shoal --impl ray [--impl mp] [--reps N]
                              [--workload NAME ...] [--smoke] [--out FILE]

    for each workload, for each rep, for each impl (A B A B ...):
        fresh child ──> `<python> -m benchmarks.child --impl I --workload W` ──> one JSON line
    medians per (workload, impl, metric) ──> table on stdout, everything raw ──> --out JSON

Each child is a session leader with a run id in its environment and a timeout; whatever of
its run outlives it is reported and terminated (machine.RunScope). A failed or timed-out child
is a cell in the table, never a crashed run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks import machine
from benchmarks.baselines import BASELINES
from benchmarks.child import BASELINE, IMPLEMENTATION_MODULES
from benchmarks.report import SUBJECT, format_table, format_value, ratios, summarize
from benchmarks.workloads import METRICS, WORKLOADS

REPO_ROOT = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS = [*IMPLEMENTATION_MODULES, BASELINE]
LEFTOVER_GRACE_S = 5.0


@dataclass(frozen=True)
class Implementation:
    name: str
    python: str

    def runs(self, workload: str) -> bool:
        return self.name != BASELINE or workload in BASELINES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.core", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--impl",
        action="append",
        choices=IMPLEMENTATIONS,
        help="repeatable; default: shoal and ray",
    )
    parser.add_argument("--workload", action="append", nargs="+", choices=list(WORKLOADS), help="default: all")
    parser.add_argument("--reps", type=int, help="fresh processes per (workload, impl); default 3, 1 with --smoke")
    parser.add_argument("--smoke", action="store_true", help="sizes shrunk ~100x (CI)")
    parser.add_argument("--out", type=Path, help="write raw reps, medians and machine info as JSON")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per child process (default 300)")
    parser.add_argument("--ray-python", default=".venv-ray/bin/python", help="interpreter for --impl ray")
    args = parser.parse_args(argv)
    args.impl = list(dict.fromkeys(args.impl or [SUBJECT, "ray"]))
    args.workload = (
        list(dict.fromkeys(name for group in args.workload for name in group)) if args.workload else list(WORKLOADS)
    )
    args.reps = args.reps if args.reps is not None else (1 if args.smoke else 3)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def resolve_python(path: str) -> str:
    """A relative interpreter path is taken from the current directory, then the repo root."""
    candidate = Path(path)
    if not candidate.is_absolute() and not candidate.exists() and (REPO_ROOT / candidate).exists():
        candidate = REPO_ROOT / candidate
    return str(candidate.absolute()) if candidate.exists() else path


def run_child(impl: Implementation, workload: str, smoke: bool, timeout_s: float) -> dict:
    """One fresh process for (impl, workload): its parsed record, or the reason it failed."""
    command = [impl.python, "-m", "benchmarks.child", "--impl", impl.name, "--workload", workload]
    command += ["--smoke"] if smoke else []
    run_id = uuid.uuid4().hex
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    env[machine.RUN_ID_ENV] = run_id
    # Files, not pipes: a leftover process holding a pipe would keep communicate() waiting.
    with tempfile.TemporaryFile("w+") as stdout_file, tempfile.TemporaryFile("w+") as stderr_file:
        start = time.monotonic()
        try:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout_file,
                stderr=stderr_file,
                text=True,
                start_new_session=True,
            )
        except OSError as error:
            return {
                "ok": False,
                "error": f"cannot start {impl.python}: {error}",
                "wall_s": 0.0,
                "timed_out": False,
                "leaked_processes": [],
            }
        scope = machine.RunScope(session_id=process.pid, run_id=run_id)
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            scope.terminate()
            process.wait()
        wall_s = time.monotonic() - start
        stdout, stderr = _read(stdout_file), _read(stderr_file)
    leftovers = scope.wait_for_exit(LEFTOVER_GRACE_S)
    leaked = [f"{pid}:{machine.process_name(pid)}" for pid in leftovers]
    if leftovers:
        scope.terminate()
    record = _parse_record(stdout) or {"ok": False}
    record.update(returncode=process.returncode, wall_s=wall_s, timed_out=timed_out, leaked_processes=leaked)
    if timed_out:
        record["ok"] = False
        record["error"] = f"timed out after {timeout_s:g} s"
    elif "error" not in record and not record["ok"]:
        tail = [line for line in stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        record["error"] = f"exit {process.returncode}: {tail[0][:300]}"
    if not record["ok"]:
        record["stderr_tail"] = stderr[-4000:]
    return record


def _read(file) -> str:
    file.seek(0)
    return file.read()


def _parse_record(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "workload" in record and "ok" in record:
                return record
    return None


def run_all(args: argparse.Namespace, impls: list[Implementation]) -> list[dict]:
    """Every (workload, rep, impl) in that order, so implementations alternate A B A B."""
    plan = [
        (workload, rep, impl)
        for workload in args.workload
        for rep in range(args.reps)
        for impl in impls
        if impl.runs(workload)
    ]
    runs = []
    for index, (workload, rep, impl) in enumerate(plan, 1):
        load_before = os.getloadavg()[0]
        started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        record = run_child(impl, workload, args.smoke, args.timeout_s)
        record["started_at"] = started_at
        # Other work on the machine skews every figure; the 1-minute load lets a reader see it.
        record["load_avg_1m"] = [load_before, os.getloadavg()[0]]
        runs.append({"workload": workload, "impl": impl.name, "rep": rep, **record})
        outcome = _brief(record) if record["ok"] else f"FAILED: {record['error']}"
        leaked = f" (leaked, terminated: {record['leaked_processes']})" if record["leaked_processes"] else ""
        print(
            f"[{index}/{len(plan)}] {workload:<15} {impl.name:<5} rep {rep + 1}: "
            f"{outcome} [{record['wall_s']:.1f} s]{leaked}",
            file=sys.stderr,
            flush=True,
        )
    return runs


def _brief(record: dict) -> str:
    return ", ".join(f"{name}={format_value(value)}" for name, value in record["metrics"].items())


def _module_version(runs: list[dict], interpreters: dict, impl: str) -> str | None:
    """`<module>.__version__` as a child imported it, else the installed distribution's."""
    for run in runs:
        version = run.get("versions", {}).get(impl) if run["impl"] == impl else None
        if version:
            return version
    return interpreters.get(impl, {}).get("packages", {}).get(impl)


def write_report(path: Path, report: dict, medians: dict, ratio_table: dict) -> None:
    """The JSON file: the run's facts, metric specs, medians, ratios and every raw rep."""
    metrics = {name: {"unit": spec.unit, "better": spec.better} for name, spec in METRICS.items()}
    runs = report.pop("runs")
    report.update(metrics=metrics, medians=medians, ratios=ratio_table, runs=runs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"\nwrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    command = [sys.executable, "-m", "benchmarks.core", *(sys.argv[1:] if argv is None else argv)]
    args = parse_args(argv)
    pythons = {
        "shoal": sys.executable,
        "ray": resolve_python(args.ray_python),
        "mp": sys.executable,
    }
    impls = [Implementation(name, pythons[name]) for name in args.impl]
    started = datetime.datetime.now(datetime.timezone.utc)
    machine_info = machine.describe_machine()
    interpreters = {
        impl.name: {
            "python": impl.python,
            **machine.interpreter_versions(impl.python, cwd=REPO_ROOT),
        }
        for impl in impls
    }
    print(f"benchmarks: {shlex.join(command)}", file=sys.stderr)
    for name, info in interpreters.items():
        print(f"  {name}: {info}", file=sys.stderr)
    runs = run_all(args, impls)
    medians = summarize(runs)
    ratio_table = ratios(medians, args.impl)
    versions = {
        "python": machine_info["python"],
        "ray": _module_version(runs, interpreters, "ray"),
        "shoal": _module_version(runs, interpreters, "shoal"),
        "numpy": {name: info.get("packages", {}).get("numpy") for name, info in interpreters.items()},
    }
    mode = "smoke sizes (~1/100)" if args.smoke else "full sizes"
    memory_gib = (machine_info["memory_total_bytes"] or 0) / 2**30
    print(
        f"\nshoal benchmarks, {mode}, medians of {args.reps} rep(s); "
        f"{machine_info['cores_usable']} cores, {memory_gib:.1f} GiB"
        + "".join(f"; {name} {versions[name]}" for name in ("ray", "shoal") if name in args.impl)
        + "\n"
    )
    print(format_table(medians, ratio_table, args.impl, args.workload))
    if args.out:
        report = {
            "date": started.isoformat(timespec="seconds"),
            "duration_s": (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(),
            "command": shlex.join(command),
            "cwd": os.getcwd(),
            "config": {
                "impls": args.impl,
                "workloads": args.workload,
                "reps": args.reps,
                "smoke": args.smoke,
                "timeout_s": args.timeout_s,
            },
            "machine": machine_info,
            "versions": versions,
            "interpreters": interpreters,
            "runs": runs,
        }
        write_report(args.out, report, medians, ratio_table)
    return 0 if all(run["ok"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
