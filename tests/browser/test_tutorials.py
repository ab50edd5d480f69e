"""The tutorials in a real JupyterLab, as a newcomer meets them: open and look (as stored), Run
All, look; save, reopen with a new kernel, look again. A saved notebook must show every view's static summary and never
"Error displaying widget". `make screenshots` keeps what the page looked like in docs/screenshots/.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.notebook_page import WIDGET, end_sessions, open_notebook, rendered_text, reopen, run_all, save

pytestmark = pytest.mark.integration

# What each tutorial must show after Run All, and again once saved and reopened.
EXPECTED = {
    "01_quickstart": ["[0, 1, 4, 9]", "caught a ValueError: True", "Cell In[", "initialized: False"],
    "02_remote_cells": ["summed on a worker", "a rich HTML display", "starting a new one", "initialized: False"],
    "03_cluster_views": ["20 finished", "20 recent task(s)", "20/20 ready (100%)", "(cluster shut down)"],
}
# How many live views each leaves behind as a static summary.
SUMMARIES = {"01_quickstart": 0, "02_remote_cells": 0, "03_cluster_views": 3}
# Drawings in those summaries, as (selector, the fewest drawn): they must show in the notebook as
# stored too, which JupyterLab does not trust (a clone's), so it sanitizes its HTML outputs.
DRAWINGS = {"03_cluster_views": [(".shoal-sparkline .shoal-rate-bar", 1), (".shoal-timeline .shoal-task", 20)]}

_CONTENT_HEIGHT = """() => {
    const cells = [...document.querySelectorAll('.jp-NotebookPanel-notebook .jp-Cell')];
    return cells[cells.length - 1].getBoundingClientRect().bottom - cells[0].getBoundingClientRect().top;
}"""
_SCROLL_TOP = """() => {
    const scroller = document.querySelector('.jp-NotebookPanel-notebook .jp-WindowedPanel-outer')
        || document.querySelector('.jp-NotebookPanel-notebook');
    scroller.scrollTop = 0;
    return scroller.scrollTop;
}"""


def _look(page, name: str) -> None:
    text = rendered_text(page)
    assert "Error displaying widget" not in text and "model not found" not in text
    for expected in EXPECTED[name]:
        assert expected in text, f"{name}: {expected!r} not shown"
    assert page.locator(".shoal-static").count() == SUMMARIES[name]
    for selector, fewest in DRAWINGS.get(name, []):
        drawn = page.locator(selector)
        assert drawn.count() >= fewest, f"{name}: {selector} not drawn"
        box = drawn.first.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0, f"{name}: {selector} has no size"
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count() == 0


def _screenshot(page, screenshots_dir, filename: str) -> None:
    if screenshots_dir is None:
        return
    # The whole notebook: a viewport as tall as its cells, scrolled to the top.
    height = page.evaluate(_CONTENT_HEIGHT)
    page.set_viewport_size({"width": 1200, "height": min(int(height) + 160, 8000)})
    page.evaluate(_SCROLL_TOP)
    page.wait_for_function(f"() => document.fonts.status === 'loaded' && ({_SCROLL_TOP})() === 0")
    page.screenshot(path=str(screenshots_dir / filename))
    page.set_viewport_size({"width": 1200, "height": 900})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_run_all_save_and_reopen(name, lab, page, screenshots_dir):
    open_notebook(page, lab, name)  # as stored in the repository: not trusted here
    _look(page, name)
    _screenshot(page, screenshots_dir, f"{name}-as-stored.png")
    run_all(page)
    _look(page, name)
    _screenshot(page, screenshots_dir, f"{name}-run-all.png")

    save(page)
    saved = json.loads((lab.root / "notebooks" / f"{name}.ipynb").read_text())
    stored = [output for cell in saved["cells"] for output in cell.get("outputs", [])]
    assert not [output for output in stored if WIDGET in output.get("data", {})], "a live widget was saved"

    reopen(page, lab, name)
    _look(page, name)
    _screenshot(page, screenshots_dir, f"{name}-reopened.png")
    end_sessions(lab, name)
