"""How many graph nodes a definition expands to, estimated from the AST before anything is unrolled.

The estimate is a lower bound: every op call is one node, every block call costs what the block's body
costs, a `repeat` with a literal count multiplies its body, an `if` counts its cheaper branch. Blocks
that call each other twice per level, or nested `repeat`s, are thereby refused before any work; what
the estimate cannot see (counts computed from parameters) the elaborator bounds as it unrolls (see
`Elaborator._chain` and `_instantiate`).
"""
from __future__ import annotations

from . import ops as O
from .syntax import ast as A


_LEAVES = frozenset(("name", "num", "str", "bool", "attr"))   # expressions that create no node


class Estimator:
    def __init__(self, scopes: dict[str, dict[str, A.BlockDef]], default_scope: dict[str, A.BlockDef], cap: int):
        self.scopes = scopes
        self.default = default_scope
        self.cap = cap                       # costs saturate here (keeps the integers small)
        self._memo: dict[int, int] = {}
        self._active: set[int] = set()

    def block(self, bd: A.BlockDef) -> int:
        if isinstance(bd, A.ActDef):         # one node
            return 1
        key = id(bd)
        if key in self._memo:
            return self._memo[key]
        if key in self._active:              # recursion: reported as E0116 by the elaborator
            return 0
        self._active.add(key)
        try:
            scope = self.scopes.get(bd.span.file, self.default)
            total = self.stmts(bd.body, scope)
        except RecursionError:
            total = 0                         # too deep to estimate; the elaborator reports it
        finally:
            self._active.discard(key)
        self._memo[key] = total
        return total

    def stmts(self, body, scope) -> int:
        total = 0
        for st in body:
            total = min(self.cap, total + self.stmt(st, scope))
        return total

    def stmt(self, st, scope) -> int:
        if isinstance(st, A.Input):
            return 1
        if isinstance(st, A.Bind):
            return self.expr(st.value, scope)
        if isinstance(st, A.Output):
            return sum(self.expr(i.value, scope) for i in st.items)
        if isinstance(st, A.If):
            return min(self.stmts(st.then, scope), self.stmts(st.orelse or [], scope))
        return 0

    def _callee(self, f, scope) -> int:
        if isinstance(f, A.Name):
            name = f.id
        elif isinstance(f, A.Attr) and isinstance(f.value, A.Name):
            name = f"{f.value.id}.{f.name}"
        else:
            return 0
        bd = scope.get(name)
        if bd is not None:
            return self.block(bd)
        return 1 if O.get(name) is not None else 0

    def expr(self, e, scope) -> int:
        k = e.kind
        if k == "call":
            n = self._callee(e.func, scope)
            for a in e.args:
                if a.value.kind not in _LEAVES:
                    n += self.expr(a.value, scope)
            return min(self.cap, n)
        if k in _LEAVES:
            return 0
        if k == "pipe":
            return min(self.cap, self.expr(e.head, scope) + sum(self.stage(s, scope) for s in e.stages))
        if k == "cond":
            return min(self.expr(e.then, scope), self.expr(e.orelse, scope))
        if k == "binop":
            return min(self.cap, self.expr(e.left, scope) + self.expr(e.right, scope))
        if k == "neg":
            return self.expr(e.value, scope)
        if k == "list":
            return min(self.cap, sum(self.expr(x, scope) for x in e.items))
        return 0

    def stage(self, s, scope) -> int:
        if isinstance(s, A.Repeat):
            body = sum(self.stage(x, scope) for x in s.stages)
            n = s.count.value if isinstance(s.count, A.Num) and isinstance(s.count.value, int) else 1
            return min(self.cap, max(n, 0) * body)
        if isinstance(s, A.IfStage):
            return min(sum(self.stage(x, scope) for x in b) for b in (s.then, s.orelse or []))
        if isinstance(s, A.Call):
            return self.expr(s, scope)
        if isinstance(s, (A.Name, A.Attr)):
            return self._callee(s, scope)
        if isinstance(s, A.Pipe):
            return min(self.cap, sum(self.stage(x, scope) for x in [s.head, *s.stages]))
        return 0
