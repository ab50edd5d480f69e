"""The matplotlib backend of remote cells (`module://shoal.kernel_ext.remote_figures`).

Agg rendering; `plt.show()` sends the open figures to the notebook cell as PNG and closes them,
as the inline backend does in a kernel. Imported only by matplotlib, on a worker, while a
`%%remote` cell runs (`cell_display.DisplayCapture` selects it); outside a cell, `show()` does
nothing, as with Agg.
"""

from __future__ import annotations

from matplotlib.backend_bases import _Backend
from matplotlib.backends.backend_agg import FigureCanvasAgg, _BackendAgg

from . import cell_display

__all__ = ["FigureCanvas", "show"]

FigureCanvas = FigureCanvasAgg


@_Backend.export
class _BackendRemoteCell(_BackendAgg):
    @staticmethod
    def show(*args, block=None, **kwargs) -> None:
        if cell_display.capturing():
            cell_display.show_figures()


show = _BackendRemoteCell.show
