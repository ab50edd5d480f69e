"""Fixtures for the Jupyter layer: an in-process IPython shell with `%load_ext shoal`.

The shell is IPython's process-wide InteractiveShell (history kept in memory). Each fixture
undoes what it did: the extension is unloaded and the cluster shut down at the end of a module.
"""

from __future__ import annotations

import pytest
import shoal


@pytest.fixture(scope="module")
def ipython_shell():
    """IPython's in-process shell, with no extension loaded."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    yield shell
    shell.extension_manager.unload_extension("shoal")


@pytest.fixture(scope="module")
def shell(ipython_shell):
    """The shell with `%load_ext shoal` and a 2-CPU cluster, both for the whole module."""
    ipython_shell.run_line_magic("load_ext", "shoal")
    shoal.init(num_cpus=2)
    yield ipython_shell
    ipython_shell.run_line_magic("unload_ext", "shoal")
    shoal.shutdown()
