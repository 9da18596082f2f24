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
}
ORDER = {"c4": 4, "d4": 8}          # elements of the finite grid groups (regular representation size)
MAX_FACTORS = 8


class Factor(NamedTuple):
    kind: str
    dims: tuple                     # dim names, in the order given
    span: object

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
        "`o3(D)`, `so3(D)` or `e3(D)`, e.g. `group G = perm(N) * o3(D)`")


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
        dims = []
        for a in x.args:
            if a.name is not None or not isinstance(a.value, A.Name):
                raise GroupSyntaxError(f"`{kind}` takes the names of the dims it acts on", a.span,
                                       f"e.g. `{kind}({'S' if KINDS[kind][0] == 'grid' else 'N'})`")
            dims.append(a.value.id)
        if len(dims) not in KINDS[kind][1]:
            n = " or ".join(str(k) for k in KINDS[kind][1])
            raise GroupSyntaxError(f"`{kind}` acts on {n} dim{'s' if KINDS[kind][1][-1] > 1 else ''}, "
                                   f"got {len(dims)}", x.span, HELP)
        out.append(Factor(kind, tuple(dims), x.span))
        if len(out) > MAX_FACTORS:
            raise GroupSyntaxError(f"a group of more than {MAX_FACTORS} factors", e.span)
    return out
