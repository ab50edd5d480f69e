"""The tutorials in a real JupyterLab, as a newcomer meets them: open, Run All, look; save, reopen
with a new kernel, look again. A saved notebook must show every view's static summary and never
"Error displaying widget". `make screenshots` keeps what the page looked like in docs/screenshots/.
"""

from __future__ import annotations

import json

import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.integration

RUN_ALL_TIMEOUT_S = 90
LOAD_TIMEOUT_MS = 60_000
WIDGET = "application/vnd.jupyter.widget-view+json"

# What each tutorial must show after Run All, and again once saved and reopened.
EXPECTED = {
    "01_quickstart": ["[0, 1, 4, 9]", "caught a ValueError: True", "Cell In[", "initialized: False"],
    "02_remote_cells": ["summed on a worker", "a rich HTML display", "starting a new one", "initialized: False"],
    "03_cluster_views": ["20 finished", "20 recent task(s)", "20/20 ready (100%)", "(cluster shut down)"],
}
# How many live views each leaves behind as a static summary.
SUMMARIES = {"01_quickstart": 0, "02_remote_cells": 0, "03_cluster_views": 3}

_NOTEBOOK = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
_KERNEL_IDLE = f"""() => {{
    const panel = {_NOTEBOOK};
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}}"""
_ALL_RUN = f"""() => {{
    const panel = {_NOTEBOOK};
    if (!panel || !panel.content) return false;
    const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    return cells.every(cell => cell.model.executionCount !== null
                               && !cell.node.querySelector('.jp-InputPrompt').textContent.includes('*'))
        && !!kernel && kernel.status === 'idle';
}}"""


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


def _open(page, lab, name: str) -> None:
    # `reset`: a clean workspace, with only this notebook open.
    page.goto(f"{lab.url}/lab/tree/notebooks/{name}.ipynb?reset&token={lab.token}")
    page.wait_for_function(
        f"""() => {{ const p = {_NOTEBOOK};
            return !!p && !!p.content && p.context.isReady && p.context.path.endsWith('{name}.ipynb') }}""",
        timeout=LOAD_TIMEOUT_MS,
    )
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")


def _kernel_ids(lab) -> set[str]:
    return {kernel["id"] for kernel in lab.api("GET", "/api/kernels")}


def _end_sessions(lab, name: str) -> set[str]:
    """Shut down the notebook's sessions and so their kernels; returns the kernels' ids."""
    ended = set()
    for session in lab.api("GET", "/api/sessions"):
        if session["path"].endswith(f"{name}.ipynb"):
            lab.api("DELETE", f"/api/sessions/{session['id']}")
            ended.add(session["kernel"]["id"])
    return ended


def _rendered_text(page) -> str:
    return page.inner_text(".jp-NotebookPanel-notebook")


def _look(page, name: str) -> None:
    text = _rendered_text(page)
    assert "Error displaying widget" not in text and "model not found" not in text
    for expected in EXPECTED[name]:
        assert expected in text, f"{name}: {expected!r} not shown"
    assert page.locator(".shoal-static").count() == SUMMARIES[name]
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
    _open(page, lab, name)
    page.wait_for_function(_KERNEL_IDLE, timeout=LOAD_TIMEOUT_MS)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(_ALL_RUN, timeout=RUN_ALL_TIMEOUT_S * 1000)
    _look(page, name)
    _screenshot(page, screenshots_dir, f"{name}-run-all.png")

    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(f"() => {{ const p = {_NOTEBOOK}; return !!p && !p.context.model.dirty }}")
    saved = json.loads((lab.root / "notebooks" / f"{name}.ipynb").read_text())
    stored = [output for cell in saved["cells"] for output in cell.get("outputs", [])]
    assert not [output for output in stored if WIDGET in output.get("data", {})], "a live widget was saved"

    # Reopen as after a restart: the kernel goes, the page reloads, a new kernel starts.
    gone = _end_sessions(lab, name)
    wait_for(lambda: not gone & _kernel_ids(lab), 30, describe=lambda: repr(lab.api("GET", "/api/kernels")))
    page.reload()
    _open(page, lab, name)
    page.wait_for_function(_KERNEL_IDLE, timeout=LOAD_TIMEOUT_MS)  # the widget manager has restored
    _look(page, name)
    _screenshot(page, screenshots_dir, f"{name}-reopened.png")
    _end_sessions(lab, name)
