"""What each reliability scenario measured, and the report `make chaos` writes from them.

A scenario fills one `Figures` through the `figures` fixture (tests/reliability/conftest.py):
the inputs it tried (kills, garbage frames, connections, bytes), the results it checked and
how many were correct, the shoal processes that died unbidden (crashes) and the waits that ran
out (hangs). The fixture adds the time and the test's outcome, so a failing scenario still
reports what it saw. `write_report` puts them all in one JSON file; `markdown_table` is what
the terminal shows at the end of the run and what docs/reliability.md quotes.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field

REPORT_ENV = "SHOAL_CHAOS_REPORT"
"""Path of the JSON report; unset, the run writes none (the table is printed either way)."""


@dataclass
class Figures:
    scenario: str
    inputs: int = 0  # faults or garbage injected
    input_kind: str = ""  # what one input is: "worker SIGKILL", "raw write", ...
    results: int = 0  # results checked, value by value
    correct: int = 0
    crashes: int = 0  # shoal processes that died without being told to
    hangs: int = 0  # waits that ran out
    seconds: float = 0.0
    outcome: str = "not run"  # "passed", or "failed: <first line of the failure>"
    parameters: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)


def _cell(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown_table(all_figures: list[Figures]) -> str:
    lines = [
        "| scenario | inputs | results correct | crashes | hangs | time (s) | outcome |",
        "|---|---|---|---|---|---|---|",
    ]
    for figures in all_figures:
        inputs = f"{_cell(figures.inputs)} {figures.input_kind}".strip()
        outcome = figures.outcome if len(figures.outcome) <= 90 else figures.outcome[:87] + "..."
        lines.append(
            f"| {figures.scenario} | {inputs} | {_cell(figures.correct)}/{_cell(figures.results)} "
            f"| {figures.crashes} | {figures.hangs} | {figures.seconds:.1f} | {outcome.replace('|', '/')} |"
        )
    return "\n".join(lines)


def _commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _plain(value):
    """numpy scalars a scenario counted with, as JSON numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} in the figures is not JSON")


def write_report(path: str, command: str, scale: dict, all_figures: list[Figures]) -> None:
    from benchmarks.machine import describe_machine

    report = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "command": command,
        "commit": _commit(),
        "machine": describe_machine(),
        "scale": scale,
        "scenarios": [asdict(figures) for figures in all_figures],
    }
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2, default=_plain)
        handle.write("\n")
