"""Outputs already given their final state, sent once more as `shoal.shutdown()` begins.

A live view's static summary, or an async cell's last status line, often replaces its output
after the cell that showed it has ended, from another thread. JupyterLab routes such a display
update by its display id whatever cell runs; a frontend that hears only the running cell's
messages (nbclient: `make notebooks`, nbval) drops it. As shutdown begins (usually a cell of its
own) every remembered final state is sent again, so such a frontend stores it too. Holds no
widget and imports neither ipywidgets nor IPython.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

logger = logging.getLogger(__name__)

_REMEMBERED = 100  # the newest final states kept; older outputs keep what they were last sent

_finals: deque = deque(maxlen=_REMEMBERED)
_listening = False
_lock = threading.Lock()


def remember(handle, bundle: dict) -> None:
    """Send `handle.update(bundle, raw=True)` again as shutdown begins.

    Args:
        handle: the output's display handle: an IPython `DisplayHandle`, or anything with
            `update(bundle, raw=True)` that updates the same display id.
        bundle: the output's final mime bundle.
    """
    global _listening
    from shoal.util import output

    with _lock:
        _finals.append((handle, bundle))
        if not _listening:
            output.add_shutdown_listener(_resend)
            _listening = True


def _resend() -> None:
    with _lock:
        finals = list(_finals)
        _finals.clear()
    for handle, bundle in finals:
        try:
            handle.update(bundle, raw=True)
        except Exception:
            logger.debug("sending an output's final state again failed", exc_info=True)
