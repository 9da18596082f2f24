"""Groups in the language: what `group G = ...` declares, read off its expression once.

A declaration is a product of factors, each acting on axes named by dims:

| factor | group | acts on |
| --- | --- | --- |
| `perm(N)` | S_N | every axis of dim N, with one permutation (a set; [N, N] edge features) |
| `cyclic(N)` | C_N | every axis of dim N, by rolls (a ring, a periodic signal) |
| `dihedral(N)` | D_N | every axis of dim N, by rolls and reversal |
| `c4(S)`, `c4(H, W)` | C4 | an image grid, by rotations of 90° (`c4(S)`: the two axes of dim S) |
| `d4(S)`, `d4(H, W)` | D4 | an image grid, by rotations and flips |
| `o3(D)`, `so3(D)` | O(d), SO(d) | the coordinate axis D of points or vectors, by orthogonal matrices |
| `e3(D)` | E(d) | point coordinates D, by rotations, reflections and translations |
| `matrices(D, M1, M2, ...)` | the finite group the matrices generate | the axis D, by those matrices |

`G * H` is the direct product: a claim holds under it when it holds under each factor (the product's
generators are the factors' generators), so the checker and the verification take factors one at a time.
Front end only: nothing here imports numpy or torch.
"""
from __future__ import annotations

from typing import NamedTuple

from ..syntax import ast as A

# kind -> (family, number of dims it may name)
KINDS = {
    "perm": ("set", (1,)), "cyclic": ("set", (1,)), "dihedral": ("set", (1,)),
    "c4": ("grid", (1, 2)), "d4": ("grid", (1, 2)),
    "o3": ("linear", (1,)), "so3": ("linear", (1,)), "e3": ("linear", (1,)),
    "matrices": ("linear", tuple(range(2, 10))),
}
MAX_MATRIX_ORDER = 512              # elements a `matrices(...)` group may have (enumerated when it is declared)
MAX_MATRIX_DIM = 8
ORDER = {"c4": 4, "d4": 8}          # elements of the finite grid groups (regular representation size)
MAX_FACTORS = 8


class Factor(NamedTuple):
    kind: str
    dims: tuple                     # dim names, in the order given
    span: object
    gens: tuple = ()                # `matrices`: the generators, as tuples of rows

    @property
    def family(self) -> str:
        return KINDS[self.kind][0]

    def describe(self) -> str:
        return f"{self.kind}({', '.join(self.dims)})"


class GroupSyntaxError(ValueError):
    def __init__(self, message: str, span, help: str = ""):
        super().__init__(message)
        self.message, self.span, self.help = message, span, help


HELP = ("a group is a product of `perm(N)`, `cyclic(N)`, `dihedral(N)`, `c4(S)`, `c4(H, W)`, `d4(...)`, "
        "`o3(D)`, `so3(D)`, `e3(D)` or `matrices(D, [[0, -1], [1, 0]], ...)`, e.g. `group G = perm(N) * o3(D)`")


def factors(e: A.Expr) -> list[Factor]:
    """The factors of a group expression, left to right. Raises GroupSyntaxError."""
    out: list[Factor] = []
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, A.BinOp) and x.op == "*":
            stack += [x.right, x.left]
            continue
        if not (isinstance(x, A.Call) and isinstance(x.func, A.Name)):
            raise GroupSyntaxError("not a group nndsl knows", x.span, HELP)
        kind = x.func.id
        if kind not in KINDS:
            raise GroupSyntaxError(f"`{kind}` is not a group nndsl knows", x.func.span, HELP)
        dims, gens = [], []
        for k, a in enumerate(x.args):
            if kind == "matrices" and k > 0:
                gens.append(_matrix(a.value, k))
                continue
            if a.name is not None or not isinstance(a.value, A.Name):
                raise GroupSyntaxError(f"`{kind}` takes the names of the dims it acts on", a.span,
                                       f"e.g. `{kind}({'S' if KINDS[kind][0] == 'grid' else 'N'})`")
            dims.append(a.value.id)
        if len(x.args) not in KINDS[kind][1]:
            n = " or ".join(str(k) for k in KINDS[kind][1]) if kind != "matrices" else "a dim and 1 to 8 matrices"
            raise GroupSyntaxError(f"`{kind}` takes {n}, got {len(x.args)} argument{'s' if len(x.args) != 1 else ''}",
                                   x.span, HELP)
        if gens:
            d = len(gens[0])
            if any(len(g) != d for g in gens):
                raise GroupSyntaxError("the generators of `matrices` must have one size", x.span)
            closure(tuple(gens), x.span)
        out.append(Factor(kind, tuple(dims), x.span, tuple(gens)))
        if len(out) > MAX_FACTORS:
            raise GroupSyntaxError(f"a group of more than {MAX_FACTORS} factors", e.span)
    return out


def _number(e, span) -> float:
    """A matrix entry: a number, or + - * / of numbers, `sqrt`, `cos`, `sin` and `pi` (nothing else runs)."""
    import math

    if isinstance(e, A.Num):
        if not math.isfinite(float(e.value)) or abs(float(e.value)) > 1e12:
            raise GroupSyntaxError("a matrix entry must be a finite number below 1e12", e.span)
        return float(e.value)
    if isinstance(e, A.Neg):
        return -_number(e.value, span)
    if isinstance(e, A.Name) and e.id == "pi":
        return math.pi
    if isinstance(e, A.BinOp) and e.op in ("+", "-", "*", "/"):
        a, b = _number(e.left, span), _number(e.right, span)
        if e.op == "/" and b == 0:
            raise GroupSyntaxError("division by zero in a matrix entry", e.span)
        v = a + b if e.op == "+" else a - b if e.op == "-" else a * b if e.op == "*" else a / b
        if not math.isfinite(v):
            raise GroupSyntaxError("a matrix entry must be finite", e.span)
        return v
    if isinstance(e, A.Call) and isinstance(e.func, A.Name) and e.func.id in ("sqrt", "cos", "sin") and \
            len(e.args) == 1 and e.args[0].name is None:
        v = _number(e.args[0].value, span)
        if e.func.id == "sqrt" and v < 0:
            raise GroupSyntaxError("sqrt of a negative number", e.span)
        if abs(v) > 1e6:
            raise GroupSyntaxError(f"`{e.func.id}` of a number beyond 1e6: give the entry itself", e.span)
        return getattr(math, e.func.id)(v)
    raise GroupSyntaxError("a matrix entry must be a number (or + - * / of numbers, sqrt, cos, sin, pi)",
                           getattr(e, "span", span))


def _matrix(e, k: int) -> tuple:
    if not (isinstance(e, A.ListExpr) and e.items and all(isinstance(r, A.ListExpr) for r in e.items)):
        raise GroupSyntaxError(f"generator {k} of `matrices` must be a square matrix: [[a, b], [c, d]]", e.span)
    d = len(e.items)
    if d > MAX_MATRIX_DIM or any(len(r.items) != d for r in e.items):
        raise GroupSyntaxError(f"generator {k} of `matrices` must be square, at most {MAX_MATRIX_DIM}x"
                               f"{MAX_MATRIX_DIM}", e.span)
    return tuple(tuple(_number(x, e.span) for x in r.items) for r in e.items)


def _mul(a, b):
    n = len(a)
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(n)) for j in range(n)) for i in range(n))


def _key(m):
    return tuple(round(x, 6) + 0.0 for row in m for x in row)


def closure(gens: tuple, span=None) -> list:
    """Every element of the group the matrices generate (the identity first), or GroupSyntaxError when
    it has more than MAX_MATRIX_ORDER (or is not finite)."""
    n = len(gens[0])
    ident = tuple(tuple(1.0 if i == j else 0.0 for j in range(n)) for i in range(n))
    seen = {_key(ident): ident}
    frontier = [ident]
    while frontier:
        nxt = []
        for a in frontier:
            for g in gens:
                b = _mul(g, a)
                k = _key(b)
                if k not in seen:
                    if len(seen) >= MAX_MATRIX_ORDER or max(abs(x) for x in k) > 1e6:
                        raise GroupSyntaxError(f"these matrices generate more than {MAX_MATRIX_ORDER:,} elements "
                                               "(a finite group's generators have finite order)", span)
                    seen[k] = b
                    nxt.append(b)
        frontier = nxt
    return list(seen.values())


def orthogonal(gens: tuple) -> bool:
    """Whether every generator is orthogonal (then dot products of acted vectors are invariant)."""
    n = len(gens[0])
    for g in gens:
        gt = tuple(tuple(g[j][i] for j in range(n)) for i in range(n))
        p = _mul(g, gt)
        if any(abs(p[i][j] - (1.0 if i == j else 0.0)) > 1e-9 for i in range(n) for j in range(n)):
            return False
    return True
