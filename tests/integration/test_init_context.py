"""What `shoal.init()` returns shows itself usefully: a text table and an HTML table with the
versions, address, node, cluster totals and how to connect from another process."""

from __future__ import annotations

import re
import sys

import pytest
import shoal

pytestmark = pytest.mark.integration


def test_text_repr_lists_the_cluster(cluster):
    text = str(cluster)
    version = ".".join(map(str, sys.version_info[:3]))
    for expected in (
        f"shoal version                 {shoal.__version__}",
        f"Python version                {version}",
        "status                        connected",
        f"node id                       {cluster['node_id']}",
        "nodes                         1",
        "CPUs                          2",
        "GPUs                          2",
        "object store memory           256.00 MiB",
        "custom resources              custom: 1",
        f"namespace                     {cluster['namespace']}",
        "shoal status",
        f'shoal.init(address="{cluster["address"]}")',
    ):
        assert expected in text, text
    assert repr(cluster).startswith(f"RayContext(address={cluster['address']!r}")


def test_ipython_shows_the_text_table(cluster):
    from IPython.lib.pretty import pretty

    assert pretty(cluster) == str(cluster)


def test_html_repr_is_a_table_with_escaped_values(cluster):
    page = cluster._repr_html_()
    assert page.startswith("<div class='shoal-context'>") and "<table" in page
    assert f"<code>{cluster['address']}</code>" in page
    assert re.search(r"<code>[^<]*shoal status</code>", page), page
    assert "shoal.init(address=&quot;" in page
    assert "<td style='text-align:left'>2</td>" in page  # CPUs


def test_reprs_of_an_ended_session_say_disconnected(cluster):
    from shoal.init_context import RayContext

    # A context whose session is gone (after shoal.shutdown() the address no longer matches).
    context = RayContext(dict(cluster.address_info, address="ipc:///tmp/gone/node.sock"))
    assert "disconnected" in str(context)
    assert "CPUs                          2" in str(context)
    assert "nodes                         ?" in str(context)
    assert "disconnected" in context._repr_html_()


def test_repr_never_starts_a_cluster(run_script):
    result = run_script(
        """
        import shoal
        context = shoal.init(num_cpus=1)
        shoal.shutdown()
        text = str(context)
        assert "disconnected" in text and "CPUs" in text, text
        assert not shoal.is_initialized()
        print("ok")
        """
    )
    assert result.stdout.strip() == "ok"
