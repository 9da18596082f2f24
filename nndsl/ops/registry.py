"""The op registry: one `OpDef` per operation carrying everything every pass and backend needs.

An op is declared once, in `nndsl/ops/<family>.py`, with `register(OpDef(...))`: signature (tensor
inputs and typed attributes), traits, shape rule (output types and axis signature, see nndsl/recipe.py),
parameter specs (whose faces give fan-in/fan-out), FLOPs and the PyTorch lowering. Later facets (init rules, sparsity, equivariance, diagram glyphs) are
further optional fields of the same record. Passes ask for traits, never for lists of op names.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..dims import Dim
from ..pyemit import lit
from ..recipe import Face, Out, P, ParamSpec, Signature  # noqa: F401  (re-exported for op families)
from ..types import TensorType

REQUIRED = object()


class OpError(Exception):
    """Raised by shape rules; the shape pass turns it into a Diagnostic at the node's span."""

    def __init__(self, code: str, message: str, label: str = "", notes=(), help: str | None = None,
                 arg: int | None = None, arg_labels: dict[int, str] | None = None, attr: str | None = None,
                 at: tuple[int, int] | None = None):
        super().__init__(message)
        self.code, self.message, self.label = code, message, label
        self.notes, self.help, self.arg = list(notes), help, arg
        self.arg_labels = arg_labels or {}
        # the attribute at fault (a pattern, an equation) and, within its string, (offset, length)
        self.attr, self.at = attr, at


def attr_span(err: OpError, attrs: dict, attr_spans: dict | None):
    """Where an error about attribute `err.attr` points, and its label: the characters `err.at` of the
    attribute's string where the call writes it as a plain literal (one line, no escapes), with the
    error's label; else the attribute's argument as a whole, unlabelled (the label speaks of characters
    it does not show). None when the attribute was not written in the call (a default)."""
    sp = attr_spans.get(err.attr) if attr_spans and err.attr else None
    if sp is None:
        return None
    text = attrs.get(err.attr)
    if err.at is not None and isinstance(text, str) and sp.line == sp.end_line and sp.end_col - sp.col == len(text) + 2:
        off, n = err.at
        off = max(0, min(off, len(text)))
        return type(sp)(sp.file, sp.line, sp.col + 1 + off, sp.line, sp.col + 1 + off + max(1, n)), err.label
    return sp, ""


@dataclass(frozen=True)
class Attr:
    """A typed attribute. Types: int, float, bool, str, dim, ints (int or list of int), dims (list of
    dims), axes (int, name, or list of them), any."""

    name: str
    type: str
    default: Any = REQUIRED
    choices: tuple | None = None
    doc: str = ""
    lo: float | None = None       # numeric attributes: inclusive bounds, checked when the spec is checked
    hi: float | None = None
    lo_open: bool = False         # lo itself is excluded (e.g. eps > 0)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass
class Lowered:
    """PyTorch lowering of one node: a module constructor (or None) and a forward expression."""

    init: Optional[str]
    expr: str
    imports: tuple[str, ...] = ()


@dataclass
class LowerCtx:
    node: Any                     # ir.Node
    a: dict                       # resolved attributes (the node's recipe: solved once by the shape rule)
    ins: list[TensorType]
    outs: list[TensorType]
    args: list[str]               # python expressions of the inputs
    m: str                        # python expression of this node's module (when it has one)
    inplace: bool = False         # input 0 may be overwritten (single consumer, not saved for backward)

    def size(self, i: int, axis: int) -> str:
        """Python expression for the size of axis `axis` of input `i` (a literal when known)."""
        d = self.ins[i].shape[axis]
        return str(d.value) if d.is_const else f"{self.args[i]}.shape[{axis}]"


@dataclass
class OpDef:
    name: str
    inputs: tuple[str, ...]                              # tensor inputs; a trailing "*" makes it variadic
    attrs: tuple[Attr, ...] = ()
    # (ins, a, facts) -> outputs, or Out(outputs, signature, resolved attributes); `facts` are the
    # divisibility facts in force. Without a signature the traits imply one (recipe.default_signature).
    infer: Callable[..., list[TensorType] | Out] = None
    params: Callable[..., list[ParamSpec]] | None = None  # (ins, a) -> parameter tensors, built with `P`
    flops: Callable[..., Dim] | None = None              # (ins, outs, a) -> FLOPs of one forward
    lower: Callable[[LowerCtx], Lowered] | None = None
    traits: frozenset = frozenset()
    aliases: tuple[str, ...] = ()
    n_outputs: Callable[[dict], int] | None = None       # for ops with several outputs
    doc: str = ""
    glyph: str = ""                                     # short label for diagrams
    # how a circuit diagram draws it (nndsl/backends/ncd.py): box, linear, conv, pool, norm, softmax, marker,
    # join, contract, attention, bar, cross, index, reduce, alias; "" derives it from the traits (draw_kind)
    draw: str = ""
    # (resolved attrs, input rank) -> axes of input 0 the glyph sits on although the signature keeps them
    # (softmax's normalised axis, a norm's statistics axes); None: the signature alone decides
    draw_on: Callable[[dict, int], tuple[int, ...]] | None = None
    check_attrs: Callable[[dict], None] | None = None    # validate attribute values -> OpError
    # (bounds, ins, outs, a) -> exclusive upper bound of an integer output's values, or None (unbounded);
    # `bounds` has one entry per input (None: no bound). Layout ops keep their inputs' bound without one.
    value_bound: Callable[..., Dim | None] | None = None
    # pointwise activations: the function on one real number, given the resolved attrs (init rules and
    # signal analysis integrate it against a Gaussian); None for everything else
    scalar: Callable[[float, dict], float] | None = None
    # signal analysis (nndsl/signal.py): Ctx -> Result, the op's effect on the statistics of entries at
    # init; None derives it from the traits (a pointwise activation from `scalar`, a layout op keeps them)
    signal: Callable[..., Any] | None = None
    # PyTorch's own initialisation of each parameter, as (mean, second moment) of its entries:
    # (ParamSpec, the node's ParamSpecs) -> (mean, m2); what signal analysis assumes for a parameter with
    # no rule
    init_default: Callable[..., tuple[float, float]] | None = None
    # whose `weight` a `sparsity` declaration may structure (nndsl/sparsity): "linear" (every rule) or
    # "conv" (masks, nm and lowrank); "" for none
    sparse: str = ""
    # the op's own equivariance rule (passes/equivariance.py): EqQuery -> None (kept; roles follow the
    # signature), a Verdict (kept with the roles of the output's axes, broken or unknown, why and a help) or a
    # string (broken, why); None: the pass reads it off the signature and parameters
    equivariance: Callable[..., Any] | None = None

    @property
    def variadic(self) -> bool:
        return bool(self.inputs) and self.inputs[-1].endswith("*")

    def attr(self, name: str) -> Attr | None:
        for a in self.attrs:
            if a.name == name:
                return a
        return None

    def outputs_for(self, a: dict) -> int:
        return self.n_outputs(a) if self.n_outputs else 1


_DRAW_BY_TRAIT = (("attention", "attention"), ("conv", "conv"), ("pool", "pool"), ("norm", "norm"),
                  ("linear", "linear"), ("contraction", "contract"), ("reduce", "reduce"), ("activation", "marker"),
                  ("elementwise", "join"), ("layout", "bar"))


def draw_kind(d: OpDef) -> str:
    """The circuit-diagram glyph kind of an op: its own `draw`, else one implied by its traits."""
    if d.draw:
        return d.draw
    for trait, kind in _DRAW_BY_TRAIT:
        if trait in d.traits:
            return kind
    if "pointwise" in d.traits and len(d.inputs) == 1:
        return "marker"
    return "box"


OPS: dict[str, OpDef] = {}
_ALIASES: dict[str, str] = {}


def register(d: OpDef) -> OpDef:
    for n in (d.name, *d.aliases):
        if n in OPS or n in _ALIASES:
            raise ValueError(f"op {n!r} is declared twice")
    OPS[d.name] = d
    for al in d.aliases:
        _ALIASES[al] = d.name
    return d


def get(name: str) -> OpDef | None:
    if not _loaded:
        _load()
    return OPS.get(name) or OPS.get(_ALIASES.get(name, ""))


def all_names() -> list[str]:
    _load()
    return sorted(set(OPS) | set(_ALIASES))


def suggest(name: str, extra=()) -> str | None:
    cands = difflib.get_close_matches(name, list(all_names()) + list(extra), n=1, cutoff=0.6)
    return cands[0] if cands else None


_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from . import (activation, attention, conv, elementwise, index, linear, norm, pool, symmetry,  # noqa: F401
                       tensor, userfn)


def torch_default_init(p: ParamSpec, params: list[ParamSpec]) -> tuple[float, float]:
    """nn.Linear / nn.ConvNd: weight kaiming_uniform(a=√5), i.e. U(±1/√fan) with PyTorch's fan read from
    the weight's shape (dim 1 times the window: in·k² for a convolution, out/groups·k² for a transposed
    one); the bias U(±1/√fan) with the weight's fan."""
    w = next((x for x in params if x.name == "weight"), p)
    fan = 1
    for d in w.shape[1:]:
        fan *= d
    return 0.0, 1.0 / (3.0 * max(fan, 1))


# -- helpers shared by op families --------------------------------------------------------------
def prod(dims) -> Dim:
    return _prod(tuple(dims))


@functools.lru_cache(maxsize=4096)
def _prod(dims: tuple) -> Dim:
    """Products of shapes repeat across a network (every layer of a width): computed once each."""
    out = Dim.const(1)
    for d in dims:
        out = out * d
    return out


def need_rank(t: TensorType, ranks, what: str, arg: int = 0) -> None:
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if t.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise OpError("E0202", f"{what} expects a {want}-d input, got {t.rank}-d {t}",
                      label=f"this is {t.rank}-d", arg=arg)


def need_float(t: TensorType, what: str, arg: int = 0) -> None:
    if not t.is_float:
        raise OpError("E0208", f"{what} expects a floating-point tensor, got {t.dtype}", arg=arg,
                      label=f"{t.dtype} tensor")


def concrete(d: Dim, what: str, arg: int = 0) -> int:
    if not d.is_const:
        raise OpError("E0203", f"{what} depends on the free dim `{d}`", arg=arg,
                      label=f"size `{d}` is only known at run time",
                      help="parameter shapes must be known when the spec is checked: bind the dim in the "
                           "input declaration or with `--dim`")
    return d.value


def tup(v, n: int) -> tuple:
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise OpError("E0111", f"expected {n} values, got {len(v)}")
        return tuple(v)
    return (v,) * n


def pyval(v) -> str:
    """A Python literal for an attribute value (through `pyemit.lit`, the one door for spec values)."""
    if isinstance(v, Dim):
        if not v.is_const:
            raise OpError("E0203", f"the value `{v}` is only known at run time here")
        return str(v.value)
    if isinstance(v, (list, tuple)):
        inner = ", ".join(pyval(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return lit(v)


def broadcast(a: TensorType, b: TensorType, what: str) -> TensorType:
    ra, rb = a.shape, b.shape
    n = max(len(ra), len(rb))
    pa = (Dim.const(1),) * (n - len(ra)) + tuple(ra)
    pb = (Dim.const(1),) * (n - len(rb)) + tuple(rb)
    an = (None,) * (n - len(ra)) + a.axis_names()
    bn = (None,) * (n - len(rb)) + b.axis_names()
    out, names = [], []
    for i, (x, y) in enumerate(zip(pa, pb)):
        if x == y or y == 1:
            out.append(x)
            names.append(an[i] or bn[i])
        elif x == 1:
            out.append(y)
            names.append(bn[i] or an[i])
        else:
            raise OpError("E0201", f"shapes do not match in `{what}`", label=str(a),
                          arg_labels={0: str(a), 1: str(b)},
                          notes=[f"axis {i - n} is `{x}` on the left and `{y}` on the right; "
                                 f"sizes must be equal or 1 to broadcast"])
    return TensorType.make(out, a.dtype, names)
