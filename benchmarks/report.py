"""Presentation of the runs: medians per (workload, impl, metric), shoal's ratios, the table.

Pure functions over the run records that benchmarks.core collects; no processes, no I/O.
"""

from __future__ import annotations

import statistics
from collections import Counter

from benchmarks.child import BASELINE
from benchmarks.workloads import METRICS, MetricSpec

SUBJECT = "shoal"  # the implementation every ratio is about
_UNSCORED = MetricSpec("", "")  # a metric a workload returned without a spec


def summarize(runs: list[dict]) -> dict:
    """Group the runs by workload and impl; medians and [min, max] over the reps that succeeded.

    Returns medians[workload][impl] = {"metrics": {name: median}, "ranges": {name: [min, max]},
    "ok_reps": k, "reps": n, "errors": [...], "leaks": [[...], ...]}.
    """
    medians: dict = {}
    for run in runs:
        cell = medians.setdefault(run["workload"], {}).setdefault(
            run["impl"], {"metrics": {}, "ok_reps": 0, "reps": 0, "errors": [], "leaks": []}
        )
        cell["reps"] += 1
        if run.get("leaked_processes"):
            cell["leaks"].append(run["leaked_processes"])
        if run["ok"]:
            cell["ok_reps"] += 1
            for name, value in run["metrics"].items():
                cell["metrics"].setdefault(name, []).append(value)
        else:
            cell["errors"].append(run["error"])
    for impls in medians.values():
        for cell in impls.values():
            values_by_name = cell["metrics"]
            cell["metrics"] = {name: _median(values) for name, values in values_by_name.items()}
            cell["ranges"] = {
                name: [min(values), max(values)]
                for name, values in values_by_name.items()
                if not any(isinstance(value, bool) for value in values)
            }
    return medians


def _median(values: list):
    if all(isinstance(value, bool) for value in values):
        return values[0] if len(set(values)) == 1 else "mixed"
    return statistics.median(values)


def ratios(medians: dict, impl_names: list[str]) -> dict:
    """ratios[workload]["shoal/ray"][metric] = {"ratio", "better", "shoal_better"}."""
    result: dict = {}
    if SUBJECT not in impl_names:
        return result
    for workload, impls in medians.items():
        subject = impls.get(SUBJECT, {}).get("metrics", {})
        for other in impl_names:
            reference = impls.get(other, {}).get("metrics", {})
            if other == SUBJECT or not reference:
                continue
            for name, value in subject.items():
                ratio = _ratio(value, reference.get(name))
                if ratio is None:
                    continue
                better = METRICS.get(name, _UNSCORED).better
                wins = None if not better else (ratio < 1 if better == "lower" else ratio > 1)
                result.setdefault(workload, {}).setdefault(f"{SUBJECT}/{other}", {})[name] = {
                    "ratio": ratio,
                    "better": better,
                    f"{SUBJECT}_better": wins,
                }
    return result


def _ratio(value, reference) -> float | None:
    numeric = (int, float)
    if isinstance(value, bool) or isinstance(reference, bool):
        return None
    if isinstance(value, numeric) and isinstance(reference, numeric) and reference:
        return value / reference
    return None


def format_value(value) -> str:
    """A median for the table: 3 significant digits below 10, thousands separators above 1000."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_table(medians: dict, ratio_table: dict, impl_names: list[str], workloads: list[str]) -> str:
    """Medians per workload, metric and impl; then shoal/<other> with who wins."""
    others = [name for name in impl_names if name != SUBJECT] if SUBJECT in impl_names else []
    header = [
        "workload",
        "metric",
        "unit",
        "better",
        *impl_names,
        *(f"{SUBJECT}/{name}" for name in others),
    ]
    rows = []
    notes = []
    for workload in workloads:
        impls = medians.get(workload, {})
        names = list(dict.fromkeys(name for cell in impls.values() for name in cell["metrics"]))
        names = names or ["(all failed)" if impls else "(not run)"]
        for index, name in enumerate(names):
            spec = METRICS.get(name, _UNSCORED)
            row = [workload if index == 0 else "", name, spec.unit, spec.better or "-"]
            for impl in impl_names:
                row.append(_cell(impls.get(impl), name))
            for other in others:
                entry = ratio_table.get(workload, {}).get(f"{SUBJECT}/{other}", {}).get(name)
                row.append(_ratio_cell(entry))
            rows.append(row)
        for impl, cell in impls.items():
            for error, count in Counter(cell["errors"]).items():
                notes.append(f"  {workload} / {impl}: {count}/{cell['reps']} reps failed: {error}")
            if cell["leaks"]:
                names = sorted({entry.split(":", 1)[1] for leak in cell["leaks"] for entry in leak})
                notes.append(
                    f"  {workload} / {impl}: {len(cell['leaks'])}/{cell['reps']} reps left"
                    f" processes behind (terminated): {', '.join(names)}"
                )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("")
    if BASELINE in impl_names:
        lines.append(f"{BASELINE}: bare multiprocessing.Pool(2); for put_large, np.copyto of the array.")
    if others:
        lines.append(f"{SUBJECT}/X: {SUBJECT} median / X median; win/loss per the 'better' column.")
    lines.append("'*' = median of the reps that succeeded; '-' = not run.")
    if notes:
        lines += ["", "Failures and leaks:", *notes]
    return "\n".join(lines)


def _cell(cell: dict | None, name: str) -> str:
    if cell is None:
        return "-"
    if not cell["ok_reps"]:
        return f"FAIL {cell['reps'] - cell['ok_reps']}/{cell['reps']}"
    if name not in cell["metrics"]:
        return "-"
    partial = "*" if cell["ok_reps"] < cell["reps"] else ""
    return format_value(cell["metrics"][name]) + partial


def _ratio_cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    verdict = {True: " win", False: " loss", None: ""}[entry[f"{SUBJECT}_better"]]
    return f"{entry['ratio']:.2f}x{verdict}"
