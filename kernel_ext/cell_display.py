"""Rich output of a remote cell: `display()`, `publish_display_data` and matplotlib figures on a
worker, turned into mime bundles and sent to the notebook cell that ran it.

Runs on workers, which have no IPython shell. IPython is optional there: with it, objects are
formatted by its `DisplayFormatter`; without it, by their `_repr_*_` methods. Never imports
IPython or matplotlib unless the cell uses them.

    worker: display(obj) ─▶ format_object ─▶ message {data, metadata, transient, update}
                                                 │ live:     one marked stdout record ─▶ log channel
                                                 │ deferred: CellResult.displays
    kernel: decode_record (output_routing) / CellResult.displays (magics) ─▶ display_data in the cell

A message is a plain dict: `{"data": {...}, "metadata": {...}, "transient": {...}, "update":
bool}`, or `{"clear": wait}` for `clear_output`. Binary data (PNG, JPEG) is base64 text, as
in a notebook file.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import uuid
from typing import Any

__all__ = ["DisplayCapture", "decode_record", "display", "encode_record", "format_object", "is_figure"]

# Starts a stdout record that carries a display message instead of text. NUL never starts
# text a cell prints, and a record is one write, so the marker cannot be split from its body.
MARKER = "\x00shoal-display\x00"
FIGURE_BACKEND = "module://shoal.kernel_ext.remote_figures"
_IPYTHON_DISPLAY_MODULES = ("IPython.core.display_functions", "IPython.core.display", "IPython.display")
_PATCHED_NAMES = ("display", "publish_display_data", "update_display", "clear_output")
_REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
)

# The capture of the cell running in this process, if any (a worker runs one cell at a time).
_active: DisplayCapture | None = None
_formatter = None


def encode_record(message: dict) -> str:
    """The stdout text that carries `message` through the worker's log channel."""
    return MARKER + json.dumps(message, default=str)


def decode_record(text: str | None) -> dict | None:
    """The display message a stdout record carries, or None for ordinary text."""
    if not text or not text.startswith(MARKER):
        return None
    try:
        message = json.loads(text[len(MARKER) :])
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def is_figure(obj) -> bool:
    """Whether `obj` is a matplotlib Figure (without importing matplotlib)."""
    return type(obj).__module__ == "matplotlib.figure" and hasattr(obj, "savefig")


def _figure_bundle(figure) -> dict:
    buffer = io.BytesIO()
    # As the inline backend does: tight bounding box at the figure's own dpi.
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"), "text/plain": repr(figure)}


def _jsonable(data: dict) -> dict:
    clean = {}
    for mime, value in data.items():
        if isinstance(value, (bytes, bytearray)):
            value = base64.b64encode(bytes(value)).decode("ascii")
        elif not isinstance(value, (str, dict, list, int, float, bool)) and value is not None:
            value = str(value)
        clean[mime] = value
    return clean


def _repr_bundle(obj, include=None, exclude=None) -> tuple[dict, dict]:
    """Format without IPython: `_repr_mimebundle_`, then the `_repr_*_` methods, then repr."""
    data, metadata = {}, {}
    method = getattr(obj, "_repr_mimebundle_", None)
    if callable(method):
        bundle: Any = method(include=include, exclude=exclude)  # a dict, or (data, metadata)
        if isinstance(bundle, tuple):
            bundle, metadata = bundle[0], dict(bundle[1] or {})
        data.update(bundle or {})
    for mime, name in _REPR_METHODS:
        method = getattr(obj, name, None)
        if mime not in data and callable(method) and not isinstance(obj, type):
            value = method()
            if isinstance(value, tuple):
                value, metadata[mime] = value
            if value is not None:
                data[mime] = value
    data.setdefault("text/plain", repr(obj))
    if include:
        data = {mime: value for mime, value in data.items() if mime in include}
    if exclude:
        data = {mime: value for mime, value in data.items() if mime not in exclude}
    return data, metadata


def format_object(obj, include=None, exclude=None) -> tuple[dict, dict]:
    """The mime bundle and metadata of `obj`, as a notebook would show it.

    Args:
        obj: Any object; a matplotlib figure becomes a PNG.
        include: Mime types to keep (all when None).
        exclude: Mime types to drop.

    Returns:
        `(data, metadata)` with binary values base64-encoded. Empty data when the object
        displayed itself (`_ipython_display_`).
    """
    if is_figure(obj):
        if _active is not None:
            _active.shown_figures.add(id(obj))
        return _figure_bundle(obj), {}
    global _formatter
    if _formatter is None and "IPython" in sys.modules:
        from IPython.core.formatters import DisplayFormatter

        _formatter = DisplayFormatter()
    if _formatter is not None:
        data, metadata = _formatter.format(obj, include=include, exclude=exclude)
    else:
        data, metadata = _repr_bundle(obj, include, exclude)
    return _jsonable(data), dict(metadata or {})


# ------------------------------------------------------------------ the display functions


def publish_display_data(data, metadata=None, source=None, *, transient=None, **kwargs) -> None:
    """IPython's `publish_display_data`, sending the bundle to the notebook cell."""
    _publish(
        {
            "data": _jsonable(dict(data)),
            "metadata": dict(metadata or {}),
            "transient": dict(transient or {}),
            "update": bool(kwargs.get("update")),
        }
    )


def display(
    *objs, include=None, exclude=None, metadata=None, transient=None, display_id=None, raw=False, clear=False, **kwargs
):
    """IPython's `display`, for a remote cell: each object is shown in the notebook cell.

    Returns:
        A DisplayHandle when `display_id` is given and IPython is installed, else None.
    """
    transient = dict(transient or {})
    if display_id:
        if display_id is True:
            display_id = uuid.uuid4().hex
        transient["display_id"] = display_id
    if not objs and display_id:
        objs, raw = ({},), True
    if clear:
        clear_output(wait=True)
    for obj in objs:
        if raw:
            data, object_metadata = dict(obj), {}
        else:
            data, object_metadata = format_object(obj, include, exclude)
            if not data:
                continue
        object_metadata.update(metadata or {})
        publish_display_data(data, object_metadata, transient=transient, update=kwargs.get("update", False))
    if display_id and "IPython" in sys.modules:
        from IPython.core.display_functions import DisplayHandle

        return DisplayHandle(display_id)
    return None


def update_display(obj, *, display_id, **kwargs) -> None:
    """IPython's `update_display`: replace what an earlier `display(..., display_id=)` showed."""
    kwargs["update"] = True
    display(obj, display_id=display_id, **kwargs)


def clear_output(wait: bool = False) -> None:
    """IPython's `clear_output`, for the notebook cell."""
    _publish({"clear": bool(wait)})


def _publish(message: dict) -> None:
    capture = _active
    if capture is None:
        # Outside a remote cell (a nested task, a thread left running): as IPython does with no shell.
        if "data" in message:
            print(message["data"].get("text/plain", ""))
        return
    capture.publish(message)


def capturing() -> bool:
    """Whether a remote cell's display capture is active in this thread's process."""
    return _active is not None


def show_figures(close: bool = True) -> None:
    """`plt.show()` in a remote cell: send every open pyplot figure to the cell."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    for number in pyplot.get_fignums():
        display(pyplot.figure(number))
    if close:
        pyplot.close("all")


_REPLACEMENTS = {
    "display": display,
    "publish_display_data": publish_display_data,
    "update_display": update_display,
    "clear_output": clear_output,
}


def replacement_for(value):
    """Our stand-in for IPython's display function `value` (captured from the notebook), or None."""
    if getattr(value, "__module__", None) == "IPython.core.display_functions":
        return _REPLACEMENTS.get(getattr(value, "__name__", ""))
    return None


# ------------------------------------------------------------------ the capture


class DisplayCapture:
    """Installs the display hooks for one cell: `with DisplayCapture(live) as capture:`.

    Args:
        live: Send each message at once as a marked record on this task's stdout (the kernel
            routes it); otherwise keep them in `messages` for the cell's result.
        patch_ipython: Also make `IPython.display.display` and friends (imported by the cell,
            or by libraries it calls) publish to the cell.
    """

    def __init__(self, live: bool, patch_ipython: bool = False) -> None:
        self.live = live
        self.patch_ipython = patch_ipython
        self.messages: list[dict] = []
        self.shown_figures: set[int] = set()
        self._stream = None
        self._saved: list[tuple[object, str, object]] = []
        self._saved_backend_env: str | None = None

    def publish(self, message: dict) -> None:
        if self.live and self._stream is not None:
            self._stream.write(encode_record(message))
        else:
            self.messages.append(message)

    def __enter__(self) -> DisplayCapture:
        global _active
        # The task's own stdout (the log channel), even if the cell redirects sys.stdout.
        self._stream = sys.stdout
        _active = self
        if self.patch_ipython or "IPython" in sys.modules:
            self._patch_ipython()
        self._saved_backend_env = os.environ.get("MPLBACKEND")
        os.environ["MPLBACKEND"] = FIGURE_BACKEND
        matplotlib = sys.modules.get("matplotlib")
        if matplotlib is not None:
            # Imported before the cell (by an earlier task, or unpickling a captured `plt`),
            # perhaps with the kernel's inline backend from the environment.
            matplotlib.use(FIGURE_BACKEND)
        return self

    def __exit__(self, *exc_info) -> None:
        global _active
        try:
            if exc_info[0] is None:
                self.flush_figures()
            else:
                pyplot = sys.modules.get("matplotlib.pyplot")
                if pyplot is not None:
                    pyplot.close("all")
        finally:
            for module, name, original in reversed(self._saved):
                setattr(module, name, original)
            self._saved.clear()
            if self._saved_backend_env is None:
                os.environ.pop("MPLBACKEND", None)
            else:
                os.environ["MPLBACKEND"] = self._saved_backend_env
            sys.stdout.flush()
            _active = None

    def flush_figures(self) -> None:
        """Show the figures the cell left open and did not show, then close them (as inline does)."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        for number in pyplot.get_fignums():
            figure = pyplot.figure(number)
            if id(figure) not in self.shown_figures:
                display(figure)
        pyplot.close("all")

    def _patch_ipython(self) -> None:
        try:
            import IPython.display  # noqa: F401  (loads the modules patched below)
        except ImportError:
            return
        for module_name in _IPYTHON_DISPLAY_MODULES:
            module = sys.modules.get(module_name)
            for name in _PATCHED_NAMES:
                if module is not None and hasattr(module, name):
                    self._saved.append((module, name, getattr(module, name)))
                    setattr(module, name, _REPLACEMENTS[name])
