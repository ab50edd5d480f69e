"""Unit tests for kernel_ext.cell_analysis: what a cell reads and assigns (pure, no cluster)."""

from __future__ import annotations

import ast
import textwrap

import pytest
from shoal.kernel_ext.cell_analysis import analyze_cell, expression_reads, split_last_expression


def names(source: str):
    return analyze_cell(textwrap.dedent(source))


def test_reads_before_assign_in_order():
    cell = names("""
        y = x + 1
        z = y * w
        x = 3
    """)
    assert cell.reads == ("x", "w")
    assert cell.assigns == ("y", "z", "x")


def test_name_assigned_first_is_not_read():
    assert names("a = 1\nb = a + 1").reads == ()


def test_augmented_assignment_reads_and_writes():
    cell = names("total += 1")
    assert cell.reads == ("total",)
    assert cell.assigns == ("total",)


def test_builtins_are_reported_as_reads():
    # The magic captures only names present in the notebook, so builtins cost nothing.
    assert names("n = len(data)").reads == ("len", "data")


def test_tuple_star_and_attribute_targets():
    cell = names("a, (b, *c) = items\nobj.attr = a\nd[0] = b")
    assert cell.reads == ("items", "obj", "d")
    assert cell.assigns == ("a", "b", "c")


def test_for_with_except_walrus_bind():
    cell = names("""
        for i in range(n):
            acc = i
        with open(path) as handle:
            text = handle.read()
        try:
            pass
        except ValueError as error:
            message = str(error)
        if (m := size) > 0:
            pass
    """)
    assert cell.reads == ("range", "n", "open", "path", "ValueError", "str", "size")
    assert cell.assigns == ("i", "acc", "handle", "text", "error", "message", "m")


def test_imports_are_kept_apart_from_assignments():
    cell = names("import numpy as np\nimport os.path\nfrom math import sqrt\nv = np.zeros(3)")
    assert cell.imports == ("np", "os", "sqrt")
    assert cell.assigns == ("v",)
    assert cell.reads == ()


def test_function_body_free_names_are_reads_but_locals_are_not():
    cell = names("""
        def scale(v, factor=default):
            local = v * factor * gain
            return local
        out = scale(3)
    """)
    assert cell.reads == ("default", "gain")
    assert cell.assigns == ("scale", "out")


def test_global_declared_in_function_is_read():
    cell = names("""
        def bump():
            global counter
            counter += 1
    """)
    assert cell.reads == ("counter",)


def test_class_body_and_bases():
    cell = names("""
        class Model(Base):
            size = width * 2
            def forward(self, x):
                return x * self.size + bias
    """)
    assert cell.reads == ("Base", "width", "bias")
    assert cell.assigns == ("Model",)


def test_comprehension_variables_stay_inside():
    cell = names("squares = [i * k for i in values if i > low]\npairs = {a: b for a, b in table}")
    assert cell.reads == ("values", "low", "k", "table")  # the filter runs before the element
    assert cell.assigns == ("squares", "pairs")


def test_lambda_parameters_are_not_reads():
    assert names("f = lambda q: q + offset").reads == ("offset",)


def test_delete_reads_the_name():
    assert names("del big").reads == ("big",)


def test_match_statement_binds_capture_patterns():
    cell = names("""
        match command:
            case [first, *rest]:
                head = first
            case {"k": value, **others}:
                head = value
    """)
    assert cell.reads == ("command",)
    assert set(cell.assigns) == {"first", "rest", "head", "value", "others"}


def test_syntax_error_propagates():
    with pytest.raises(SyntaxError):
        analyze_cell("x = (")


def test_expression_reads():
    assert expression_reads(" sum(data) + offset ") == ("sum", "data", "offset")
    with pytest.raises(SyntaxError):
        expression_reads("x = 1")


def test_split_last_expression_keeps_line_numbers():
    tree = ast.parse("a = 1\nb = 2\na + b\n")
    body, last = split_last_expression(tree)
    assert len(body.body) == 2
    assert last is not None and last.body.lineno == 3
    namespace: dict = {}
    exec(compile(body, "<cell>", "exec"), namespace)
    assert eval(compile(last, "<cell>", "eval"), namespace) == 3


def test_split_without_trailing_expression():
    tree = ast.parse("a = 1\n")
    body, last = split_last_expression(tree)
    assert last is None and body is tree
