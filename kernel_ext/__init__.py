"""shoal's IPython extension: `%load_ext shoal` registers the magics and starts nothing.

The cluster starts on the first `%%remote` / `%remote` (or with `%shoal init`).
Inside an ipykernel it also routes worker output to the cell that submitted each task
(`output_routing`) and shows a progress bar in a cell blocked on many refs or a long `%%remote`
cell (`wait_display`). In any IPython shell, an interrupt shows the cell's frames, not shoal's
(`interrupts`). `%unload_ext shoal` removes the magics, gives output back to the runtime and
stops the extension's background threads.
IPython is imported here only when the extension is loaded, never by `import shoal`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .magics import ShoalMagics
    from .output_routing import KernelOutputRouter
    from .wait_display import WaitDisplays

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

# The magics instance per shell, so unload removes exactly what load registered.
_LOADED: dict[int, ShoalMagics] = {}
# The output router per shell (only for shells inside an ipykernel).
_ROUTERS: dict[int, KernelOutputRouter] = {}
# The wait progress bars per shell (only for shells inside an ipykernel).
_WAIT_DISPLAYS: dict[int, WaitDisplays] = {}
# Shells whose KeyboardInterrupt handler the extension set.
_INTERRUPTS: set[int] = set()


def load_ipython_extension(ipython) -> None:
    """Register shoal's magics (`%%remote`, `%remote`, `%remote_reset`, `%shoal`) in `ipython`.

    In an ipykernel, worker output from then on goes to the cell that submitted each task, and
    a cell blocked in `shoal.get`/`shoal.wait` on several refs (or a `%%remote` cell) for more
    than about a second shows a progress bar until the wait ends.

    Args:
        ipython: The running InteractiveShell.
    """
    from .magics import ShoalMagics

    if id(ipython) in _LOADED:
        return
    magics = ShoalMagics(ipython)
    ipython.register_magics(magics)
    _LOADED[id(ipython)] = magics
    from . import interrupts

    if interrupts.install(ipython):
        _INTERRUPTS.add(id(ipython))
    from .output_routing import KernelOutputRouter, kernel_of

    kernel = kernel_of(ipython)
    if kernel is not None:
        router = KernelOutputRouter(kernel)
        router.install()
        _ROUTERS[id(ipython)] = router
        magics.router = router
        from .wait_display import WaitDisplays

        # The cell's unfinished line goes out before a wait's summary line, which ends the cell.
        displays = WaitDisplays(before_summary=router.flush_partial_lines)
        displays.install()
        _WAIT_DISPLAYS[id(ipython)] = displays


def unload_ipython_extension(ipython) -> None:
    """Remove shoal's magics from `ipython` and stop their background work.

    The cluster, if one is running, stays up: `%shoal shutdown` (or `shoal.shutdown()`) stops it.

    Args:
        ipython: The running InteractiveShell.
    """
    router = _ROUTERS.pop(id(ipython), None)
    if router is not None:
        router.close()
    displays = _WAIT_DISPLAYS.pop(id(ipython), None)
    if displays is not None:
        displays.close()
    if id(ipython) in _INTERRUPTS:
        _INTERRUPTS.discard(id(ipython))
        from . import interrupts

        interrupts.uninstall(ipython)
    widgets = sys.modules.get("shoal.widgets")
    if widgets is not None:
        widgets.stop_refresher()  # the widgets' one refresher thread goes with the extension
    magics = _LOADED.pop(id(ipython), None)
    if magics is None:
        return
    magics.close()
    registry = ipython.magics_manager.magics
    for kind, names in magics.magics.items():
        for name in names:
            registry[kind].pop(name, None)
    registry_instances = ipython.magics_manager.registry
    registry_instances.pop(type(magics).__name__, None)
