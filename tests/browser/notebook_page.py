"""Driving one notebook in the lab's page as a person does: open it, Run All, save, end its
kernel, reload; and reading what the page shows. Used by the browser tier's tests."""

from __future__ import annotations

from tests.waiting import wait_for

RUN_ALL_TIMEOUT_S = 90
LOAD_TIMEOUT_MS = 60_000
WIDGET = "application/vnd.jupyter.widget-view+json"

NOTEBOOK = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
KERNEL_IDLE = f"""() => {{
    const panel = {NOTEBOOK};
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}}"""
ALL_RUN = f"""() => {{
    const panel = {NOTEBOOK};
    if (!panel || !panel.content) return false;
    const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    return cells.every(cell => cell.model.executionCount !== null
                               && !cell.node.querySelector('.jp-InputPrompt').textContent.includes('*'))
        && !!kernel && kernel.status === 'idle';
}}"""


def open_notebook(page, lab, name: str) -> None:
    """Open notebooks/NAME.ipynb in a clean workspace (only it open) and wait for its kernel."""
    page.goto(f"{lab.url}/lab/tree/notebooks/{name}.ipynb?reset&token={lab.token}")
    page.wait_for_function(
        f"""() => {{ const p = {NOTEBOOK};
            return !!p && !!p.content && p.context.isReady && p.context.path.endsWith('{name}.ipynb') }}""",
        timeout=LOAD_TIMEOUT_MS,
    )
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    page.wait_for_function(KERNEL_IDLE, timeout=LOAD_TIMEOUT_MS)  # and the widget manager has restored


def run_all(page) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(ALL_RUN, timeout=RUN_ALL_TIMEOUT_S * 1000)


def save(page) -> None:
    """File > Save, and wait until the notebook is no longer dirty."""
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(f"() => {{ const p = {NOTEBOOK}; return !!p && !p.context.model.dirty }}")


def kernel_ids(lab) -> set[str]:
    return {kernel["id"] for kernel in lab.api("GET", "/api/kernels")}


def end_sessions(lab, name: str) -> set[str]:
    """Shut down the notebook's sessions and so their kernels; returns the kernels' ids."""
    ended = set()
    for session in lab.api("GET", "/api/sessions"):
        if session["path"].endswith(f"{name}.ipynb"):
            lab.api("DELETE", f"/api/sessions/{session['id']}")
            ended.add(session["kernel"]["id"])
    return ended


def reopen(page, lab, name: str) -> None:
    """As after a restart: the notebook's kernel goes, the page reloads, a new kernel starts."""
    gone = end_sessions(lab, name)
    wait_for(lambda: not gone & kernel_ids(lab), 30, describe=lambda: repr(lab.api("GET", "/api/kernels")))
    page.reload()
    open_notebook(page, lab, name)


def rendered_text(page) -> str:
    return page.inner_text(".jp-NotebookPanel-notebook")
