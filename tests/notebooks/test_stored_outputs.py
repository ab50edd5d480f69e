"""The tutorials' stored outputs are what a fresh run shows, and what a saved notebook can show.

A fresh run executes each tutorial in a new kernel of this venv, live (as a user's Run All, and
as `make notebooks`, which stores the outputs), and every code cell's outputs must equal the
stored ones once tests/notebooks/nbval_sanitize.cfg has masked what differs between runs (ids,
paths, pids, sizes, timings). nbval (in `make test`) checks the marked cells too, but it hears
only a cell's own messages, not the display updates that turn live views into their summaries.
"""

from __future__ import annotations

import configparser
import copy
import json
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")
WIDGET = "application/vnd.jupyter.widget-view+json"
CELL_TIMEOUT_S = 120


def sanitizers() -> list[tuple[re.Pattern, str]]:
    """The (regex, replacement) pairs of the sanitize file, in order (nbval's format)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(SANITIZE)
    return [(re.compile(parser[name]["regex"]), parser[name]["replace"]) for name in parser.sections()]


def masked(text: str, patterns) -> str:
    for pattern, replacement in patterns:
        text = pattern.sub(replacement, text)
    return text


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def shown(cell: dict, patterns) -> list:
    """What a cell shows: per output, its type and its text forms, masked."""
    outputs = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            outputs.append(("stream", output["name"], masked(_text(output["text"]), patterns)))
        elif output["output_type"] == "error":
            outputs.append(("error", output["ename"], masked(output["evalue"], patterns)))
        else:
            data = output.get("data", {})
            forms = {mime: masked(_text(data[mime]), patterns) for mime in sorted(data) if mime.startswith("text/")}
            outputs.append(("display", tuple(sorted(data)), forms))
    return outputs


def _code_cells(notebook: dict) -> list[dict]:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _compared(cell: dict) -> bool:
    """All code cells but those tagged `nbval-ignore-output` (a task list: its order varies)."""
    return "nbval-ignore-output" not in cell.get("metadata", {}).get("tags", [])


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda path: path.stem)
def test_stored_outputs_match_a_fresh_run(path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("SHOAL_NONINTERACTIVE", raising=False)  # live, as a user runs it
    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))  # this venv's kernel
    stored = nbformat.read(path, as_version=4)
    fresh = copy.deepcopy(stored)
    NotebookClient(
        fresh,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        store_widget_state=False,
    ).execute()
    patterns = sanitizers()
    for index, (old, new) in enumerate(zip(_code_cells(stored), _code_cells(fresh))):
        if not _compared(old):
            continue
        assert shown(new, patterns) == shown(old, patterns), (
            f"{path.name}, code cell {index} ({_text(old['source']).splitlines()[:1]}): the stored output is "
            "not what a fresh run shows; run `make notebooks` and look at the diff"
        )


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda path: path.stem)
def test_stored_outputs_need_no_widget_manager(path):
    notebook = _load(path)
    assert "widgets" not in notebook["metadata"], "widget state saved: outputs would depend on it"
    for cell in _code_cells(notebook):
        for output in cell.get("outputs", []):
            assert WIDGET not in output.get("data", {}), f"a live widget was stored in {path.name}"
            assert "Error displaying widget" not in json.dumps(output)
        assert "execution" not in cell["metadata"], "timing metadata changes at every run"


def test_quickstart_explains_the_warning_before_it_shows_it():
    cells = _load(ROOT / "notebooks" / "01_quickstart.ipynb")["cells"]
    first_red = next(
        index
        for index, cell in enumerate(cells)
        if any(output.get("name") == "stderr" for output in cell.get("outputs", []))
    )
    assert first_red > len(cells) // 2, "the quick start should not open with a red box"
    explanation = _text(cells[first_red - 1]["source"])
    assert cells[first_red - 1]["cell_type"] == "markdown" and "warning" in explanation
    (warning,) = [output for output in cells[first_red]["outputs"] if output.get("name") == "stderr"]
    assert re.search(r"Cell In\[\d+\], line 3: UserWarning: shoal.get\(\)", _text(warning["text"]))
