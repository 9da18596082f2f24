"""The recipe of a node: what its op's shape rule solved, once, for every later pass and backend.

A shape rule returns the output types and, with them, an **axis signature** in einsum spirit: for every
output axis, which input axes it comes from (`keep`: the same axis, joined from several inputs when they
broadcast; `merge`: the product of several; a `Ref` with `parts > 1`: one factor of a split axis;
`derive`: a new axis computed from others, e.g. a convolution's strided window; `new`: an axis that
comes from no input, e.g. a linear layer's output features), and which input axes are contracted
(summed against each other or against a weight) or reduced away. Parameters say, axis by axis, which
tensor axis they face (`Face`), so fan-in and fan-out follow from the signature and are never written per
op. The shape pass stores it all on the node as a `Recipe`; `params`, fan, FLOPs and the lowering read it.

Nothing here imports torch; records are tuples (the shape pass builds thousands of them).
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

from pydantic import BaseModel, ConfigDict, Field

from .fastmodel import make


class Ref(NamedTuple):
    """Axis `axis` of input `arg`; with `parts > 1`, factor `part` (of size `size`) of that axis split in
    `parts`."""

    arg: int
    axis: int
    part: int = 0
    parts: int = 1
    size: Any = None


class Ax(NamedTuple):
    """Where one output axis comes from."""

    kind: str                    # KEEP, MERGE, DERIVE or NEW
    refs: tuple = ()             # Refs it comes from
    name: Optional[str] = None   # a display-name hint: a pattern or einsum letter, a dim
    how: str = ""                # for DERIVE: window, slice, concat, piece, resize, reduced, expand


KEEP, MERGE, DERIVE, NEW = "keep", "merge", "derive", "new"


class Signature(NamedTuple):
    outs: tuple                  # per output: a tuple of Ax, one per axis
    contracted: tuple = ()       # groups of Refs summed against each other (or against a weight)
    reduced: tuple = ()          # Refs reduced away (sum, mean, max, a pooling window)


class Face(NamedTuple):
    """What one axis of a parameter faces. Roles: `in` (a contracted input axis), `out` (an output axis),
    `window` (a kernel axis sliding over an input axis), `both` (one axis that is fan-in and fan-out at
    once, as in a free 1-d parameter), `channel` (per-channel scale, shift or statistic), `bias` (added
    to an output axis), `none`. `side` is "in" or "out" (or "" when it faces no tensor axis); `groups`
    > 1 says the axis is block-diagonal: each unit on the other side meets size/groups of it."""

    role: str
    side: str = ""
    index: int = 0
    axis: int = 0
    groups: int = 1


class ParamSpec(BaseModel):
    """One parameter or buffer of a node: the one record every pass fills and every backend reads."""

    model_config = ConfigDict(defer_build=True, arbitrary_types_allowed=True)

    name: str                            # "" for a free parameter that is the node itself
    shape: tuple[int, ...]
    kind: str = "param"                  # "param" (learned) or "buffer"
    dtype: str = "float32"
    tied_to: Optional[str] = None        # "node.param" this one shares storage with
    tied_transposed: bool = False        # it is that parameter transposed (`tie=transpose(enc)`)
    trainable: bool = True               # receives gradients (false for frozen weights)
    faces: tuple = ()                    # one Face per axis (empty: the op says nothing)
    fan_in: Optional[int] = None         # from the faces: inputs feeding one output unit
    fan_out: Optional[int] = None        # outputs fed by one input unit
    facets: dict[str, Any] = Field(default_factory=dict)  # init, layout, ... (nndsl/facets)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def P(name: str, shape, faces=(), kind: str = "param", dtype: str = "float32") -> ParamSpec:
    """A parameter spec from a shape rule (no validation: the rule built it from checked values)."""
    shape = tuple(shape)
    fin = fout = None
    if faces:
        fin, fout = fan_of(shape, faces)
    return make(ParamSpec, name=name, shape=shape, kind=kind, dtype=dtype, faces=tuple(faces), fan_in=fin,
                fan_out=fout, facets={}, tied_transposed=False)


def fan_of(shape, faces) -> tuple[Optional[int], Optional[int]]:
    """(fan_in, fan_out) from the faces: the `in` (or `both`) axes times the window, and the `out` (or
    `both`) axes times the window, each divided by its groups. None for a parameter with neither."""
    fin = fout = window = 1
    has_in = has_out = False
    for size, f in zip(shape, faces):
        eff = size // f.groups if f.groups > 1 else size
        if f.role == "window":
            window *= size
        elif f.role == "in":
            fin, has_in = fin * eff, True
        elif f.role == "out":
            fout, has_out = fout * eff, True
        elif f.role == "both":
            fin, fout, has_in, has_out = fin * eff, fout * eff, True, True
    if not (has_in or has_out):
        return None, None
    return fin * window, fout * window


class Recipe(BaseModel):
    """Stored on a node by the shape pass: resolved attributes and the axis signature."""

    model_config = ConfigDict(defer_build=True, arbitrary_types_allowed=True)

    # the op's attributes, with what the rule solved (axes, sizes); read-only: the shape pass gives one
    # dict to every node its rule memo serves
    attrs: dict[str, Any]
    sig: Any = None                      # Signature
    fan: tuple = (None, None)            # (fan_in, fan_out) of the node's weight


def signature_from_data(data) -> Optional[Signature]:
    """A Signature back from its JSON form (nested lists)."""
    if data is None:
        return None
    outs, contracted, reduced = (list(data) + [[], []])[:3]

    def ref(r):
        return Ref(*r)
    return Signature(tuple(tuple(Ax(a[0], tuple(ref(r) for r in a[1]), *a[2:]) for a in axes) for axes in outs),
                     tuple(tuple(ref(r) for r in g) for g in contracted), tuple(ref(r) for r in reduced))


class Out(NamedTuple):
    """What a shape rule may return instead of a bare list of types."""

    types: list
    sig: Optional[Signature] = None
    resolved: Optional[dict] = None


# -- signatures shared by op families -------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def keep_all(rank: int, arg: int = 0) -> tuple:
    return tuple(Ax(KEEP, (Ref(arg, i),)) for i in range(rank))


def same_shape(ins, outs) -> Signature:
    """Every output axis is the same axis of input 0 (activations, norms, dropout)."""
    return _same_shape(tuple(t.rank for t in outs))


@functools.lru_cache(maxsize=256)
def _same_shape(ranks: tuple) -> Signature:
    return Signature(tuple(keep_all(r) for r in ranks))


def broadcast_sig(ins, out) -> Signature:
    """Right-aligned broadcasting: an output axis is the input axes of its size that meet there."""
    n = out.rank
    axes = []
    for k in range(n):
        refs = []
        for i, t in enumerate(ins):
            j = k - (n - t.rank)
            if j >= 0 and (t.shape[j] == out.shape[k]):
                refs.append(Ref(i, j))
        axes.append(Ax(KEEP, tuple(refs)) if refs else Ax(NEW, how="broadcast"))
    return Signature((tuple(axes),))


def default_signature(od, ins, outs) -> Optional[Signature]:
    """The signature an op's traits imply, for ops whose rule returns none."""
    if "elementwise" in od.traits:
        return Signature(tuple(broadcast_sig(ins, o).outs[0] for o in outs))
    if "shape_preserving" in od.traits and ins and all(o.rank == ins[0].rank for o in outs):
        return same_shape(ins, outs)
    return None
