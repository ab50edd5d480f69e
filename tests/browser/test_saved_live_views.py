"""A notebook saved while a view is still live (mid-session, or by autosave) reopens showing the
view's last state, not "Error displaying widget: model not found": the lab saves the widgets'
state with the notebook (the venv's lab settings, written by `make venv`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from tests.browser.notebook_page import WIDGET, end_sessions, open_notebook, rendered_text, reopen, run_all, save

pytestmark = pytest.mark.integration

NAME = "live_view"
# The cluster stays up and the view live while the notebook is saved; nothing shuts it down.
SOURCE = """\
import shoal
import shoal.widgets

shoal.init(num_cpus=1)
shoal.widgets.ClusterView()
"""
LIVE_VIEW = ".jp-OutputArea-output .shoal-cluster"
LAB_SETTINGS = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "shoal.json"


def test_a_notebook_saved_while_a_view_is_live_reopens_with_its_last_state(lab, page):
    if not LAB_SETTINGS.exists():
        pytest.fail(f"{LAB_SETTINGS} is missing: `make venv` writes the venv's lab settings")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SOURCE)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = lab.root / "notebooks" / f"{NAME}.ipynb"
    nbformat.write(notebook, path)
    try:
        open_notebook(page, lab, NAME)
        run_all(page)
        page.wait_for_selector(f"{LIVE_VIEW} .shoal-cluster-header")  # drawn by the widget
        assert page.locator(".shoal-static").count() == 0, "the view is still live"
        assert page.locator(".shoal-shutdown").count() == 1, "its controls show: a live widget"
        save(page)
        saved = json.loads(path.read_text())
        (output,) = saved["cells"][0]["outputs"]
        assert WIDGET in output["data"], "saved while live: the output is the widget"
        state = saved["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        assert output["data"][WIDGET]["model_id"] in state, "the widget's state is saved with it"

        reopen(page, lab, NAME)  # its kernel is gone: nothing will update the view again
        page.wait_for_selector(LIVE_VIEW)
        text = rendered_text(page)
        assert "Error displaying widget" not in text and "model not found" not in text, text
        assert "shoal cluster" in text and "1 node" in text and "CPU" in text, text
    finally:
        end_sessions(lab, NAME)
