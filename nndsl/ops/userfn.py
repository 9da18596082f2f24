"""`fn`: an activation the spec defines (`act swishy(x) = x * sigmoid(1.702 * x)`).

The elaborator compiles the definition, with its numeric parameters bound, to a small expression tree
held in the node's `expr` attribute, as data (never code):

    ["x"]                 the input          ["n", 1.702]        a number
    ["b", "*", l, r]      + - * /            ["neg", e]          −e
    ["f", "sigmoid", e]   a function of FUNCS

The tree gives the op its scalar form (so `variance_preserving(act=...)` and the signal pass integrate it
like any built-in activation) and its PyTorch lowering (one torch expression).
"""
from __future__ import annotations

import math

from .activation import _BY_NAME, _by_name_scalar
from .registry import Attr, Lowered, OpDef, OpError, need_float, prod, register


def _safe(f):
    def g(x: float) -> float:
        try:
            return f(x)
        except (OverflowError, ValueError, ZeroDivisionError):
            return math.nan
    return g


# name -> (scalar, torch expression of an argument)
FUNCS: dict = {
    "exp": (math.exp, lambda a: f"torch.exp({a})"), "log": (math.log, lambda a: f"torch.log({a})"),
    "sqrt": (math.sqrt, lambda a: f"torch.sqrt({a})"), "abs": (abs, lambda a: f"torch.abs({a})"),
    "sin": (math.sin, lambda a: f"torch.sin({a})"), "cos": (math.cos, lambda a: f"torch.cos({a})"),
    "erf": (math.erf, lambda a: f"torch.erf({a})"),
}
for _name, _emit in _BY_NAME.items():
    if _name != "identity":
        FUNCS[_name] = (_by_name_scalar(_name), _emit)

MAX_NODES = 4096          # a compiled act, after inlining the acts it calls


def evaluate(tree, x: float) -> float:
    """The tree at a real number x (NaN where a function is undefined or overflows)."""
    return _safe(lambda v: _ev(tree, v))(x)


def _ev(t, x: float) -> float:
    k = t[0]
    if k == "x":
        return x
    if k == "n":
        return t[1]
    if k == "neg":
        return -_ev(t[1], x)
    if k == "f":
        return FUNCS[t[1]][0](_ev(t[2], x))
    a, b = _ev(t[2], x), _ev(t[3], x)
    op = t[1]
    return a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b


def emit(t, arg: str) -> str:
    """The tree as a PyTorch expression of the tensor named `arg`."""
    k = t[0]
    if k == "x":
        return arg
    if k == "n":
        return repr(float(t[1]))
    if k == "neg":
        return f"(-{emit(t[1], arg)})"
    if k == "f":
        return FUNCS[t[1]][1](emit(t[2], arg))
    return f"({emit(t[2], arg)} {t[1]} {emit(t[3], arg)})"


def size(t, limit: int = MAX_NODES) -> int:
    """Nodes of the tree as written out (shared subtrees counted each time), counting stops past `limit`."""
    n, stack = 0, [t]
    while stack and n <= limit:
        x = stack.pop()
        n += 1
        stack.extend(c for c in x[1:] if isinstance(c, list))
    return n


def valid(t, budget: list | None = None) -> bool:
    """A well-formed tree: known kinds, operators and functions, finite numbers, at most MAX_NODES nodes.
    (`fn` is what a call of an act becomes; written directly, its `expr` is checked before any use.)"""
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0 or not isinstance(t, list) or not t:
        return False
    k = t[0]
    if k == "x":
        return len(t) == 1
    if k == "n":
        return len(t) == 2 and isinstance(t[1], (int, float)) and not isinstance(t[1], bool) and math.isfinite(t[1])
    if k == "neg":
        return len(t) == 2 and valid(t[1], budget)
    if k == "f":
        return len(t) == 3 and isinstance(t[1], str) and t[1] in FUNCS and valid(t[2], budget)
    if k == "b":
        return len(t) == 4 and t[1] in ("+", "-", "*", "/") and valid(t[2], budget) and valid(t[3], budget)
    return False


def _check(a):
    if not valid(a["expr"]):
        raise OpError("E0119", "`expr` of `fn` is not an activation's expression; define one with "
                      "`act name(x) = ...` and call it by its name")


def _infer(ins, a, facts):
    need_float(ins[0], f"`{a['name']}`")
    return [ins[0]]


register(OpDef(
    name="fn", inputs=("x",), attrs=(Attr("name", "str", "fn"), Attr("expr", "any", ["x"])),
    infer=_infer, flops=lambda ins, outs, a: size(a["expr"]) * prod(ins[0].shape),
    lower=lambda c: Lowered(None, emit(c.a["expr"], c.args[0])),
    traits=frozenset({"pointwise", "activation", "parameter_free", "shape_preserving"}),
    glyph="φ", scalar=lambda x, a: evaluate(a["expr"], x), check_attrs=_check,
    doc="An activation defined in the spec with `act name(x) = ...` (written by calling it by its name).",
))
