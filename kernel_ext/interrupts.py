"""A KeyboardInterrupt in a cell shows as IPython shows a local one: the cell's frames, not shoal's.

An interrupt while a cell waits on the cluster is raised deep in the runtime's wait loop; the
runtime has already written one line saying what it cancelled. Here the traceback is cut before
the first frame of shoal's own code (and the IPython magic machinery that called it, for a
`%%remote` cell), then shown by IPython as usual. Installed by `%load_ext shoal` as the shell's
custom handler for KeyboardInterrupt, only when no other custom handler is set.

    run_code ─▶ cell frames ─▶ [IPython magic frames] ─▶ shoal frames ... ─▶ KeyboardInterrupt
               └── kept ──┘    └──────────────── cut ─────────────────┘
"""

from __future__ import annotations

import os
import types

__all__ = ["install", "uninstall", "user_traceback"]


def _folder(path: str) -> str:
    return os.path.dirname(os.path.abspath(path)) + os.sep


def _shoal_dirs() -> tuple[str, ...]:
    import importlib.util

    import shoal

    widgets = importlib.util.find_spec("shoal.widgets")  # found, not imported (no ipywidgets needed)
    found = [shoal.__file__, __file__, widgets.origin if widgets is not None else None]
    return tuple(_folder(path) for path in found if path)


def _ipython_dirs() -> tuple[str, ...]:
    import IPython

    return (_folder(IPython.__file__),)


def user_traceback(tb, shoal_dirs: tuple[str, ...], machinery_dirs: tuple[str, ...] = ()):
    """`tb` without the frames from the first one in `shoal_dirs` on; `tb` itself if it has none.

    Frames in `machinery_dirs` (IPython's) just before the cut, and the cell frame that called
    them (a magic's line, not the user's Python), go too; the first frame (IPython's `run_code`,
    which its tracebacks skip) always stays.

    Args:
        tb: A traceback, outermost frame first.
        shoal_dirs: Folders (ending in a separator) of shoal's code.
        machinery_dirs: Folders of the shell's own code.

    Returns:
        A new traceback chain (`tb` is not changed), or `tb` when nothing is cut.
    """
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    filenames = [os.path.abspath(entry.tb_frame.f_code.co_filename) for entry in entries]
    cut = next((index for index, name in enumerate(filenames) if name.startswith(shoal_dirs)), None)
    if cut is None:
        return entries[0] if entries else None
    kept = entries[:cut]
    through_machinery = False
    while len(kept) > 1 and _is_machinery(filenames[len(kept) - 1], machinery_dirs):
        kept.pop()
        through_machinery = True
    if through_machinery and len(kept) > 1:
        kept.pop()  # the cell's `get_ipython().run_cell_magic(...)` line
    rebuilt = None
    for entry in reversed(kept or entries[:1]):
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt


def _is_machinery(filename: str, machinery_dirs: tuple[str, ...]) -> bool:
    return filename.startswith(machinery_dirs) or os.path.basename(filename).startswith("<decorator-gen-")


def _show_interrupt(shell, etype, value, tb, tb_offset=None):
    trimmed = user_traceback(tb, _shoal_dirs(), _ipython_dirs())
    shell.showtraceback((etype, value, trimmed), tb_offset=tb_offset)
    return None


def install(shell) -> bool:
    """Show interrupts in `shell` without shoal's frames; False when another handler is set."""
    if getattr(shell, "custom_exceptions", ()) != ():
        return False
    shell.set_custom_exc((KeyboardInterrupt,), _show_interrupt)
    return True


def uninstall(shell) -> None:
    """Undo `install` (only if the handler is still the one it set)."""
    if getattr(shell, "custom_exceptions", ()) == (KeyboardInterrupt,):
        shell.set_custom_exc((), None)
