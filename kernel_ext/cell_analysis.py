"""What a notebook cell reads and writes, found from its syntax tree.

Pure: parses source text and returns names; no IPython, no cluster, no execution. Imported on
workers too (the remote side splits off the last expression with `split_last_expression`).

The read analysis errs on the side of reading too much: a name read anywhere the cell could
see the caller's value (top level before it is bound there, or free in a function, class or
comprehension body) counts as read. Capturing a name the cell did not need costs a copy;
missing one costs a NameError on the worker.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CellNames", "analyze_cell", "expression_reads", "split_last_expression"]


@dataclass(frozen=True)
class CellNames:
    """The names a cell reads before binding them, and the names it binds at top level.

    Attributes:
        reads: Names whose value the cell may take from the enclosing namespace, in order of
            first use.
        assigns: Names bound at the top level of the cell (assignments, loop and `with`
            targets, `def`, `class`, walrus), in order of first binding. Imports are apart.
        imports: Names bound by `import` statements (modules are not pushed back).
    """

    reads: tuple[str, ...]
    assigns: tuple[str, ...]
    imports: tuple[str, ...]


def analyze_cell(source: str) -> CellNames:
    """Find the names a cell reads before assigning them and the names it assigns.

    Args:
        source: Python source of the cell (no IPython magics or shell escapes).

    Returns:
        The cell's reads, top-level assignments and imported names.

    Raises:
        SyntaxError: The cell is not valid Python.

    Example:
        >>> analyze_cell("y = x + 1\\nimport math").reads
        ('x',)
    """
    tree = ast.parse(source)
    visitor = _TopLevelVisitor()
    for statement in tree.body:
        visitor.visit(statement)
    imports = tuple(name for name in visitor.bound if name in visitor.imported)
    assigns = tuple(name for name in visitor.bound if name not in visitor.imported)
    return CellNames(reads=tuple(visitor.reads), assigns=assigns, imports=imports)


def expression_reads(source: str) -> tuple[str, ...]:
    """The names one expression reads (for the `%remote EXPR` line magic).

    Args:
        source: A single Python expression.

    Returns:
        The names it reads, in order of first use.

    Raises:
        SyntaxError: `source` is not a single expression.
    """
    tree = ast.parse(source.strip(), mode="eval")
    visitor = _TopLevelVisitor()
    visitor.visit(tree.body)
    return tuple(visitor.reads)


def split_last_expression(tree: ast.Module) -> tuple[ast.Module, ast.Expression | None]:
    """Split a parsed cell into its statements and its trailing expression, if any.

    Line numbers are kept, so code compiled from either part reports the cell's own lines.

    Args:
        tree: The parsed cell.

    Returns:
        `(body, last)`: a module of every statement but a trailing expression statement, and
        that expression ready for `compile(..., "eval")` (None when the cell does not end in
        an expression).
    """
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(body=tree.body[-1].value)
        body = ast.Module(body=tree.body[:-1], type_ignores=[])
        return body, last
    return tree, None


def _bound_by_target(target: ast.AST) -> list[str]:
    """Names an assignment target binds (`a`, `a, (b, *c)`); attribute/subscript bind none."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _bound_by_target(element)]
    if isinstance(target, ast.Starred):
        return _bound_by_target(target.value)
    return []


class _TopLevelVisitor(ast.NodeVisitor):
    """Walks top-level statements in execution order, tracking what is bound so far."""

    def __init__(self) -> None:
        self.bound: dict[str, None] = {}
        self.imported: set[str] = set()
        self.reads: dict[str, None] = {}

    def _read(self, name: str) -> None:
        if name not in self.bound:
            self.reads.setdefault(name)

    def _bind(self, name: str) -> None:
        self.bound.setdefault(name)

    def _bind_target(self, target: ast.AST) -> None:
        # Subscript and attribute targets read their base (`a[i] = 1` needs `a`).
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            self.visit(target)
            return
        if isinstance(target, ast.Starred):
            self._bind_target(target.value)
            return
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._bind_target(element)
            return
        for name in _bound_by_target(target):
            self._bind(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self._bind(node.id)
        else:
            self._read(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._bind_target(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
        self._bind_target(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._bind_target(node.target)
        elif not isinstance(node.target, ast.Name):
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._bind(node.target.id)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._bind_target(node.target)
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._bind_target(item.optional_vars)
        for statement in node.body:
            self.visit(statement)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._bind(node.name)
        for statement in node.body:
            self.visit(statement)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                continue
            name = alias.asname or alias.name.split(".")[0]
            self._bind(name)
            self.imported.add(name)

    visit_ImportFrom = visit_Import

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name):
                self._read(target.id)
            else:
                self.visit(target)

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        return None

    visit_Nonlocal = visit_Global

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self._bind(node.rest)

    # Nested scopes: what they evaluate at definition time is read now; their bodies read
    # whatever they do not bind themselves.

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for decorator in getattr(node, "decorator_list", ()):
            self.visit(decorator)
        arguments = node.args
        for default in [*arguments.defaults, *arguments.kw_defaults]:
            if default is not None:
                self.visit(default)
        for annotation in _annotations(node):
            self.visit(annotation)
        parameters = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
        parameters += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
        body = node.body if isinstance(node.body, list) else [node.body]
        for name in _free_names(body, set(parameters)):
            self._read(name)
        if not isinstance(node, ast.Lambda):
            self._bind(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expression in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expression)
        for name in _free_names(node.body, set()):
            self._read(name)
        self._bind(node.name)

    def _visit_comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        generators = node.generators
        # The first iterable is evaluated in the enclosing scope.
        self.visit(generators[0].iter)
        inner = _TopLevelVisitor()
        for index, generator in enumerate(generators):
            if index:
                inner.visit(generator.iter)
            inner._bind_target(generator.target)
            for condition in generator.ifs:
                inner.visit(condition)
        for part in ("key", "value", "elt"):
            if hasattr(node, part):
                inner.visit(getattr(node, part))
        for name in inner.reads:
            self._read(name)
        # Walrus targets inside a comprehension bind in the enclosing scope.
        for child in ast.walk(node):
            if isinstance(child, ast.NamedExpr):
                self._bind(child.target.id)

    visit_ListComp = _visit_comprehension
    visit_SetComp = _visit_comprehension
    visit_DictComp = _visit_comprehension
    visit_GeneratorExp = _visit_comprehension


def _annotations(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[ast.AST]:
    if isinstance(node, ast.Lambda):
        return []
    arguments = node.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
    found = [a.annotation for a in every if a is not None and a.annotation is not None]
    if node.returns is not None:
        found.append(node.returns)
    return found


def _free_names(body: Sequence[ast.AST], parameters: set[str]) -> list[str]:
    """Names a nested scope reads but does not bind itself (its free and global names)."""
    inner = _TopLevelVisitor()
    for name in parameters:
        inner._bind(name)
    declared_global: set[str] = set()
    for statement in body:
        for child in ast.walk(statement):
            if isinstance(child, (ast.Global, ast.Nonlocal)):
                declared_global.update(child.names)
    for statement in body:
        inner.visit(statement)
    # A name bound anywhere in a function body is local to it, even if read before binding.
    locally_bound = set(inner.bound) - declared_global
    return [name for name in inner.reads if name not in locally_bound]
