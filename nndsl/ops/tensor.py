"""Layout, indexing, reduction and contraction ops: rearrange, reshape, flatten, permute, transpose,
concat, split, chunk, sum/mean/max, select, slice, positions, expand_like, matmul, einsum."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..dims import Dim, sym_name
from ..recipe import DERIVE, KEEP, MERGE, NEW, Ax, Out, Ref, Signature, broadcast_sig
from ..types import TensorType
from .. import signal as S
from .registry import Attr, Lowered, OpDef, OpError, broadcast, prod, pyval, register


def resolve_axis(t: TensorType, axis, what: str = "axis") -> int:
    if isinstance(axis, Dim):
        axis = axis.symbol_name() or (axis.value if axis.is_const else str(axis))
    if isinstance(axis, str):
        name = sym_name(axis)
        names = t.axis_names()
        if name in names:
            return names.index(name)
        known = [n for n in names if n]
        raise OpError("E0209", f"the tensor has no axis named `{name}`", arg=0, label=f"axes of {t}: "
                      + (", ".join(known) if known else "none are named"),
                      help="name axes in the input declaration, or give the axis as an integer")
    if t.rank == 0:
        raise OpError("E0209", f"a 0-d tensor has no {what} {axis}", arg=0, label="this is 0-d (a scalar)")
    if not isinstance(axis, int) or isinstance(axis, bool) or not -t.rank <= axis < t.rank:
        raise OpError("E0209", f"{what} {axis} is out of range for a {t.rank}-d tensor", arg=0)
    return axis % t.rank


def _axes_list(t, axes):
    if axes is None:
        return list(range(t.rank))
    if not isinstance(axes, (list, tuple)):
        axes = [axes]
    out = [resolve_axis(t, a) for a in axes]
    if len(set(out)) != len(out):
        raise OpError("E0209", "an axis is listed twice")
    return out


# -- rearrange ----------------------------------------------------------------------------------
@dataclass
class Pattern:
    left: list[list[str]]
    right: list[list[str]]


_AXIS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_PATTERN_TOKEN = re.compile(r"\(|\)|[A-Za-z_][A-Za-z0-9_]*|\S")


def _bad(message: str, at: tuple[int, int] | None = None, label: str = "", help: str | None = None) -> OpError:
    """An error in a rearrange pattern, at characters `at` of it (offset, length) where there is one place."""
    return OpError("E0207", message, label=label if at else "", attr="pattern", at=at, help=help)


def parse_side(text: str, base: int = 0) -> list[list[str]]:
    """The groups of one side of a pattern; `base` is where the side starts in the whole pattern (errors
    point into the pattern)."""
    groups: list[list[str]] = []
    cur: list[str] | None = None
    opened = 0
    for m in _PATTERN_TOKEN.finditer(text):
        tok, at = m.group(), (base + m.start(), len(m.group()))
        if tok == "(":
            if cur is not None:
                raise _bad("nested parentheses in a rearrange pattern", at, "opened inside a group")
            cur, opened = [], base + m.start()
        elif tok == ")":
            if cur is None:
                raise _bad("unbalanced `)` in a rearrange pattern", at, "no group to close")
            groups.append(cur)
            cur = None
        elif _AXIS.fullmatch(tok):
            if cur is not None:
                cur.append(tok)
            else:
                groups.append([tok])
        else:
            raise _bad(f"unexpected `{tok}` in a rearrange pattern", at, "not an axis name",
                       help="patterns use axis names, spaces and parentheses, e.g. \"b c (h p) w -> b (c p) h w\"")
    if cur is not None:
        raise _bad("unbalanced `(` in a rearrange pattern", (opened, 1), "never closed")
    return groups


def parse_pattern(p: str) -> Pattern:
    if p.count("->") != 1:
        if "->" not in p and "→" in p:
            raise _bad("a rearrange pattern needs exactly one `->`", (p.index("→"), 1), "write `->`")
        second = p.find("->", p.find("->") + 2) if "->" in p else -1
        raise _bad("a rearrange pattern needs exactly one `->`", (second, 2) if second >= 0 else None, "a second `->`",
                   help='a pattern maps the input axes to the output axes: "b t (h d) -> b h t d"')
    l, r = p.split("->")
    left, right = parse_side(l), parse_side(r, len(l) + 2)
    la = [a for g in left for a in g]
    ra = [a for g in right for a in g]
    for side, axes, text, base in (("left", la, l, 0), ("right", ra, r, len(l) + 2)):
        dup = {a for a in axes if axes.count(a) > 1}
        if dup:
            name = sorted(dup)[0]
            second = [m for m in _AXIS.finditer(text) if m.group() == name][1]
            raise _bad(f"axis `{name}` appears twice on the {side} of the pattern", (base + second.start(), len(name)),
                       "again here")
    if set(la) != set(ra):
        name = sorted(set(la) ^ set(ra))[0]
        text, base = (l, 0) if name in la else (r, len(l) + 2)
        m = next(m for m in _AXIS.finditer(text) if m.group() == name)
        raise _bad(f"axis `{name}` appears on only one side of the pattern", (base + m.start(), len(name)),
                   "not on the other side")
    return Pattern(left, right)


def _solve_rearrange(x: TensorType, a: dict, facts=None):
    pat = parse_pattern(a["pattern"])
    if len(pat.left) != x.rank:
        raise OpError("E0207", f"the pattern's left side has {len(pat.left)} axes, the tensor {x.rank}", arg=0,
                      label=f"this is {x.rank}-d: {x}")
    sizes: dict[str, Dim] = {k: Dim.of(v) for k, v in (a.get("sizes") or {}).items()}
    for g, d in zip(pat.left, x.shape):
        known = [sizes[n] for n in g if n in sizes]
        unknown = [n for n in g if n not in sizes]
        if len(unknown) > 1:
            raise OpError("E0207", f"cannot infer the sizes of {', '.join(unknown)} in `({' '.join(g)})`",
                          help=f"give all but one of them, e.g. {unknown[0]}=...")
        k = prod(known)
        if unknown:
            if k.is_const and d.is_const and k.value and d.value % k.value:
                raise OpError("E0205", f"axis of size {d} is not divisible by {k} in `({' '.join(g)})`", arg=0)
            if not k.is_const or not d.is_const:
                if k != 1 and not (facts is not None and facts.divides(k, d)) and d.mod(k, facts) != 0:
                    raise OpError("E0205", f"cannot prove that `{d}` is divisible by `{k}` in `({' '.join(g)})`",
                                  arg=0, help=f"state it with `ensure {d} % {k} == 0`")
            sizes[unknown[0]] = d.floordiv(k, facts)
        elif prod(known) != d:
            raise OpError("E0201", f"rearrange: `({' '.join(g)})` has size {prod(known)} but the axis is {d}", arg=0)
    return pat, sizes


def _rearrange_infer(ins, a, facts):
    x = ins[0]
    pat, sizes = _solve_rearrange(x, a, facts)
    shape = [prod(sizes[n] for n in g) for g in pat.right]
    in_names = dict(zip([g[0] for g in pat.left if len(g) == 1], [n for g, n in zip(pat.left, x.axis_names()) if len(g) == 1]))
    names = [(in_names.get(g[0]) or g[0]) if len(g) == 1 else None for g in pat.right]
    # each elementary axis is an input axis, or one factor of it when its group splits it
    where = {n: Ref(0, gi) if len(g) == 1 else Ref(0, gi, j, len(g), sizes[n]) for gi, g in enumerate(pat.left)
             for j, n in enumerate(g)}
    sig = Signature((tuple(Ax(KEEP, (where[g[0]],), name=g[0]) if len(g) == 1 else
                           Ax(MERGE, tuple(where[n] for n in g)) for g in pat.right),))
    return Out([TensorType.make(shape, x.dtype, names)], sig,
               {"sizes": sizes, "left": pat.left, "right": pat.right})


def _rearrange_lower(c):
    x = c.args[0]
    # the pattern as the shape rule solved it (with the spec's facts), never solved again here
    pat, sizes = Pattern(c.a["left"], c.a["right"]), c.a["sizes"]
    elem = [n for g in pat.left for n in g]

    def rt(name):  # runtime size of an elementary axis
        d = sizes[name]
        if d.is_const:
            return str(d.value)
        for i, g in enumerate(pat.left):
            if name in g:
                others = prod(sizes[n] for n in g if n != name)
                return f"{x}.shape[{i}]" if len(g) == 1 else f"{x}.shape[{i}] // {others}"
        return "-1"

    code = x
    if any(len(g) != 1 for g in pat.left):
        code += f".reshape({', '.join(rt(n) for n in elem)})"
    order = [elem.index(n) for g in pat.right for n in g]
    if order != sorted(order):
        code += f".permute({', '.join(map(str, order))})"
    if any(len(g) != 1 for g in pat.right):
        out = []
        for g in pat.right:
            parts = [rt(n) for n in g]
            consts = [int(p) for p in parts if p.isdigit()]
            other = [p for p in parts if not p.isdigit()]
            k = 1
            for v in consts:
                k *= v
            expr = " * ".join(other + ([str(k)] if k != 1 or not other else []))
            out.append(expr)
        code += f".reshape({', '.join(out)})"
    return Lowered(None, code)


register(OpDef(
    name="rearrange", inputs=("x",), attrs=(Attr("pattern", "str"), Attr("sizes", "kwargs", None)),
    infer=_rearrange_infer, flops=lambda ins, outs, a: Dim.const(0), lower=_rearrange_lower,
    traits=frozenset({"parameter_free", "layout"}), glyph="rearrange",
    doc='einops-style reshape/transpose: rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=16, q=16).',
))


# -- reshape family ------------------------------------------------------------------------------
def _reshape_infer(ins, a, facts):
    x = ins[0]
    target = list(a["shape"])
    n_free = sum(1 for d in target if d == -1)
    if n_free > 1:
        raise OpError("E0111", "reshape: at most one size may be -1")
    known = prod(d for d in target if d != -1)
    total = x.numel()
    if n_free:
        if known.is_const and total.is_const and (known.value == 0 or total.value % known.value):
            raise OpError("E0205", f"reshape: {total} elements cannot be split into {a['shape']}", arg=0)
        target = [total.floordiv(known, facts) if d == -1 else d for d in target]
    elif prod(target) != total:
        raise OpError("E0201", f"reshape: {x} has {total} elements, the target shape "
                      f"[{', '.join(map(str, target))}] has {prod(target)}", arg=0)
    return Out([TensorType.make(target, x.dtype)], Signature((reshape_axes(x.shape, target),)))


def reshape_axes(src, dst) -> tuple:
    """Match a reshape's axes: runs of input and output axes with equal products are one axis kept, axes
    merged, or one axis split; anything else is derived from the whole run. Size-1 axes come and go."""
    one = Dim.const(1)
    out: list = []
    i = j = 0
    n, m = len(src), len(dst)
    while j < m:
        while i < n and src[i] == one and dst[j] != one:
            i += 1
        if dst[j] == one:
            out.append(Ax(KEEP, (Ref(0, i),)) if i < n and src[i] == one else Ax(NEW, how="unit"))
            i += 1 if i < n and src[i] == one else 0
            j += 1
            continue
        if i >= n:
            out.append(Ax(NEW, how="reshape"))
            j += 1
            continue
        # grow the shorter side until the products meet (a few steps: shapes are short)
        i2, j2 = i + 1, j + 1
        p, q = src[i], dst[j]
        while p != q and (i2 < n or j2 < m):
            if (p.is_const and q.is_const and p.value < q.value and i2 < n) or j2 >= m:
                p, i2 = p * src[i2], i2 + 1
            elif q.is_const and p.is_const and q.value < p.value or i2 >= n:
                q, j2 = q * dst[j2], j2 + 1
            else:   # symbolic and unequal: take the rest as one run
                p, i2, q, j2 = prod(src[i:]), n, prod(dst[j:]), m
        refs = tuple(Ref(0, k) for k in range(i, i2))
        if i2 - i == 1 and j2 - j == 1:
            out.append(Ax(KEEP, refs))
        elif j2 - j == 1:
            out.append(Ax(MERGE, refs))
        elif i2 - i == 1:
            out.extend(Ax(KEEP, (Ref(0, i, k, j2 - j, dst[j + k]),)) for k in range(j2 - j))
        else:
            out.extend(Ax(DERIVE, refs, how="reshape") for _ in range(j, j2))
        i, j = i2, j2
    return tuple(out)


def _reshape_lower(c):
    x, t = c.args[0], c.ins[0]
    parts, used_free = [], False
    for d in c.a["shape"]:
        if d == -1:
            parts.append("-1")
            used_free = True
        elif d.is_const:
            parts.append(str(d.value))
        elif d in t.shape:
            parts.append(f"{x}.shape[{list(t.shape).index(d)}]")
        elif not used_free:
            parts.append("-1")
            used_free = True
        else:
            raise OpError("E0304", f"reshape: cannot compute the size `{d}` at run time")
    return Lowered(None, f"{x}.reshape({', '.join(parts)})")


register(OpDef(
    name="reshape", inputs=("x",), attrs=(Attr("shape", "dims"),), infer=_reshape_infer,
    flops=lambda ins, outs, a: Dim.const(0), lower=_reshape_lower, traits=frozenset({"parameter_free", "layout"}),
    aliases=("view",), glyph="reshape", doc="Reshape to a shape; one size may be -1.",
))


def _flatten_infer(ins, a, facts):
    x = ins[0]
    if x.rank == 0:
        return Out([TensorType.make([1], x.dtype)], Signature(((Ax(NEW, how="unit"),),)))
    s, e = resolve_axis(x, a["start"]), resolve_axis(x, a["end"])
    if s > e:
        raise OpError("E0111", f"flatten: start axis {s} is after end axis {e}")
    names = x.axis_names()
    merged = Ax(KEEP, (Ref(0, s),)) if s == e else Ax(MERGE, tuple(Ref(0, i) for i in range(s, e + 1)))
    sig = Signature((tuple(Ax(KEEP, (Ref(0, i),)) for i in range(s)) + (merged,)
                     + tuple(Ax(KEEP, (Ref(0, i),)) for i in range(e + 1, x.rank)),))
    return Out([TensorType.make(x.shape[:s] + (prod(x.shape[s:e + 1]),) + x.shape[e + 1:], x.dtype,
                                names[:s] + ((names[s],) if s == e else (None,)) + names[e + 1:])], sig,
               {"start": s, "end": e})


register(OpDef(
    name="flatten", inputs=("x",), attrs=(Attr("start", "axes", 1), Attr("end", "axes", -1)),
    infer=_flatten_infer, flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"{c.args[0]}.reshape(1)" if c.ins[0].rank == 0 else
                            f"torch.flatten({c.args[0]}, {c.a['start']}, "
                            f"{c.a['end']})"),
    traits=frozenset({"parameter_free", "layout"}), glyph="flatten", doc="Merge axes start..end into one.",
))


def _permute_infer(ins, a, facts):
    x = ins[0]
    order = _axes_list(x, a["dims"])
    if sorted(order) != list(range(x.rank)):
        raise OpError("E0111", f"permute: {order} is not a permutation of the {x.rank} axes", arg=0)
    names = x.axis_names()
    return Out([TensorType.make([x.shape[i] for i in order], x.dtype, [names[i] for i in order])],
               Signature((tuple(Ax(KEEP, (Ref(0, i),)) for i in order),)), {"dims": order})


register(OpDef(
    name="permute", inputs=("x",), attrs=(Attr("dims", "axes"),), infer=_permute_infer,
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"{c.args[0]}.permute({', '.join(map(str, c.a['dims']))})"
                            if c.ins[0].rank else c.args[0]),
    traits=frozenset({"parameter_free", "layout"}), glyph="permute", draw="cross", doc="Reorder axes.",
))


def _transpose_infer(ins, a, facts):
    x = ins[0]
    i, j = resolve_axis(x, a["a"]), resolve_axis(x, a["b"])
    order = list(range(x.rank))
    order[i], order[j] = order[j], order[i]
    names = x.axis_names()
    return Out([TensorType.make([x.shape[k] for k in order], x.dtype, [names[k] for k in order])],
               Signature((tuple(Ax(KEEP, (Ref(0, k),)) for k in order),)), {"a": i, "b": j})


register(OpDef(
    name="transpose", inputs=("x",), attrs=(Attr("a", "axes", -2), Attr("b", "axes", -1)),
    infer=_transpose_infer, flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"{c.args[0]}.transpose({c.a['a']}, {c.a['b']})"),
    traits=frozenset({"parameter_free", "layout"}), glyph="T", draw="cross", doc="Swap two axes.",
))


# -- concat / split / chunk ---------------------------------------------------------------------
def _concat_infer(ins, a, facts):
    if not ins:
        raise OpError("E0104", "concat needs at least one tensor")
    x = ins[0]
    ax = resolve_axis(x, a["axis"])
    total = Dim.const(0)
    for i, t in enumerate(ins):
        if t.rank != x.rank:
            raise OpError("E0202", f"concat: tensor {i} is {t.rank}-d, tensor 0 is {x.rank}-d", arg=i)
        for k in range(x.rank):
            if k != ax and t.shape[k] != x.shape[k]:
                raise OpError("E0201", f"concat along axis {ax}: axis {k} differs ({x.shape[k]} vs {t.shape[k]})",
                              arg_labels={0: str(x), i: str(t)})
        if t.dtype != x.dtype:
            raise OpError("E0208", f"concat of {x.dtype} and {t.dtype}", arg=i)
        total = total + t.shape[ax]
    shape = list(x.shape)
    shape[ax] = total
    names = list(x.axis_names())
    sig = Signature((tuple(Ax(DERIVE, tuple(Ref(i, k) for i in range(len(ins))), how="concat") if k == ax else
                           Ax(KEEP, tuple(Ref(i, k) for i in range(len(ins)))) for k in range(x.rank)),))
    return Out([TensorType.make(shape, x.dtype, names)], sig, {"axis": ax})


register(OpDef(
    name="concat", inputs=("xs*",), attrs=(Attr("axis", "axes", 1),), infer=_concat_infer,
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"torch.cat([{', '.join(c.args)}], dim={c.a['axis']})"),
    traits=frozenset({"parameter_free", "layout"}), aliases=("cat",), glyph="concat", signal=S.concat,
    doc="Join tensors along an axis.",
))


def _split_sizes(x, a):
    ax = resolve_axis(x, a["axis"])
    sizes = [Dim.of(s) for s in a["sizes"]]
    if prod([Dim.const(1)]) and sum(sizes, Dim.const(0)) != x.shape[ax]:
        raise OpError("E0201", f"split sizes {[str(s) for s in sizes]} do not add up to the axis size {x.shape[ax]}",
                      arg=0)
    return ax, sizes


def _split_infer(ins, a, facts):
    x = ins[0]
    ax, sizes = _split_sizes(x, a)
    outs = []
    for s in sizes:
        shape = list(x.shape)
        shape[ax] = s
        outs.append(TensorType.make(shape, x.dtype, x.axis_names()))
    return Out(outs, _piece_sig(x.rank, ax, len(outs)), {"axis": ax, "sizes": sizes})


def _piece_sig(rank: int, ax: int, n: int) -> Signature:
    """n pieces of axis `ax`; the other axes are kept."""
    one = tuple(Ax(DERIVE, (Ref(0, k),), how="piece") if k == ax else Ax(KEEP, (Ref(0, k),)) for k in range(rank))
    return Signature((one,) * n)


register(OpDef(
    name="split", inputs=("x",), attrs=(Attr("sizes", "dims"), Attr("axis", "axes", -1)),
    infer=_split_infer, flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"torch.split({c.args[0]}, {pyval(list(c.a['sizes']))}, dim={c.a['axis']})"),
    n_outputs=lambda a: len(a["sizes"]), traits=frozenset({"parameter_free", "layout"}), glyph="split",
    doc="Split along an axis into pieces of the given sizes.",
))


def _chunk_infer(ins, a, facts):
    x = ins[0]
    ax = resolve_axis(x, a["axis"])
    n = a["n"]
    d = x.shape[ax]
    if d.mod(n, facts) != 0:
        raise OpError("E0205", f"chunk: axis size {d} is not divisible into {n} equal pieces", arg=0)
    shape = list(x.shape)
    shape[ax] = d.floordiv(n, facts)
    return Out([TensorType.make(shape, x.dtype, x.axis_names()) for _ in range(n)], _piece_sig(x.rank, ax, n),
               {"axis": ax})


def _chunk_check(a):
    if not 1 <= a["n"] <= 4096:
        raise OpError("E0111", f"chunk: n must be between 1 and 4096, got {a['n']}")


register(OpDef(
    name="chunk", inputs=("x",), attrs=(Attr("n", "int"), Attr("axis", "axes", -1)), infer=_chunk_infer,
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"torch.chunk({c.args[0]}, {c.a['n']}, dim={c.a['axis']})"),
    n_outputs=lambda a: a["n"], traits=frozenset({"parameter_free", "layout"}), check_attrs=_chunk_check,
    glyph="chunk", doc="Split into n equal pieces along an axis.",
))


# -- reductions -----------------------------------------------------------------------------------
def _make_reduce(name: str, fn: str):
    def infer(ins, a, facts):
        x = ins[0]
        if name == "mean" and not x.is_float:
            raise OpError("E0208", f"mean of a {x.dtype} tensor is not defined", arg=0, label=f"{x.dtype} tensor",
                          help="convert to a float dtype first, or use `sum`")
        axes = _axes_list(x, a["axes"])
        names = x.axis_names()
        reduced = tuple(Ref(0, i) for i in axes)
        if name == "sum" and not x.is_float:   # PyTorch sums bool and integer tensors in int64
            x = x.model_copy(update={"dtype": "int64"})
        if a["keepdim"]:
            shape = [Dim.const(1) if i in axes else d for i, d in enumerate(x.shape)]
            sig = Signature((tuple(Ax(DERIVE, (Ref(0, i),), how="reduced") if i in axes else Ax(KEEP, (Ref(0, i),))
                                   for i in range(x.rank)),), reduced=reduced)
            return Out([TensorType.make(shape, x.dtype, names)], sig, {"axes": axes})
        keep = [i for i in range(x.rank) if i not in axes]
        sig = Signature((tuple(Ax(KEEP, (Ref(0, i),)) for i in keep),), reduced=reduced)
        return Out([TensorType.make([x.shape[i] for i in keep], x.dtype, [names[i] for i in keep])], sig,
                   {"axes": axes})

    def lower(c):
        axes = c.a["axes"]
        if not axes or (len(axes) == c.ins[0].rank and not c.a["keepdim"]):
            return Lowered(None, f"{fn}({c.args[0]})")  # every axis (or a 0-d tensor): a 0-d result
        dims = str(axes[0]) if len(axes) == 1 else f"({', '.join(map(str, axes))})"
        kd = ", keepdim=True" if c.a["keepdim"] else ""
        return Lowered(None, f"{fn}({c.args[0]}, dim={dims}{kd})")

    register(OpDef(
        name=name, inputs=("x",), attrs=(Attr("axes", "axes", None), Attr("keepdim", "bool", False)),
        infer=infer, flops=lambda ins, outs, a: prod(ins[0].shape), lower=lower,
        traits=frozenset({"parameter_free", "reduce"}), glyph=name, value_bound=_REDUCE_BOUNDS.get(name),
        signal=S.reduce(name),
        doc=f"{name} over the given axes (names or indices; all axes by default).",
    ))


def _sum_bound(ranges, ins, outs, a):
    """A sum of n values in [lo, hi) (lo >= 0) lies in [lo * n, (hi - 1) * n + 1)."""
    r = ranges[0]
    if r is None or not (r[0].is_const and r[0].value >= 0):
        return None
    n = prod(ins[0].shape)
    for d in outs[0].shape:
        n = n.floordiv(d)
    return r[0] * n, (r[1] - 1) * n + 1


_REDUCE_BOUNDS = {"sum": _sum_bound, "max": lambda ranges, ins, outs, a: ranges[0]}
_make_reduce("sum", "torch.sum")
_make_reduce("mean", "torch.mean")
_make_reduce("max", "torch.amax")


# -- indexing helpers ----------------------------------------------------------------------------
def _select_infer(ins, a, facts):
    x = ins[0]
    ax = resolve_axis(x, a["axis"])
    d = x.shape[ax]
    i = a["index"]
    if d.is_const and not -d.value <= i < d.value:
        raise OpError("E0111", f"select: index {i} is out of range for an axis of size {d}", arg=0)
    names = x.axis_names()
    sig = Signature((tuple(Ax(KEEP, (Ref(0, k),)) for k in range(x.rank) if k != ax),))
    return Out([TensorType.make(x.shape[:ax] + x.shape[ax + 1:], x.dtype, names[:ax] + names[ax + 1:])], sig,
               {"axis": ax})


register(OpDef(
    name="select", inputs=("x",), attrs=(Attr("axis", "axes"), Attr("index", "int")), infer=_select_infer,
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"{c.args[0]}.select({c.a['axis']}, {c.a['index']})"),
    traits=frozenset({"parameter_free", "layout"}), glyph="select", draw="index", doc="Take one index along an axis, dropping it.",
))


def _slice_infer(ins, a, facts):
    x = ins[0]
    ax = resolve_axis(x, a["axis"])
    d = x.shape[ax]
    start, end, step = a["start"], a["end"], a["step"]
    if step <= 0:
        raise OpError("E0111", "slice: step must be positive")
    if end is None:
        end_d = d
    elif end < 0:
        end_d = d + end
    else:
        end_d = Dim.const(end) if not d.is_const else Dim.const(min(end, d.value))
    start_d = Dim.const(start) if start >= 0 else d + start
    length = (end_d - start_d + step - 1).floordiv(step)
    if length.is_const and length.value <= 0:
        raise OpError("E0111", f"slice [{start}:{end}] of an axis of size {d} is empty", arg=0)
    shape = list(x.shape)
    shape[ax] = length
    sig = Signature((tuple(Ax(DERIVE, (Ref(0, k),), how="slice") if k == ax else Ax(KEEP, (Ref(0, k),))
                           for k in range(x.rank)),))
    return Out([TensorType.make(shape, x.dtype, x.axis_names())], sig, {"axis": ax})


def _slice_lower(c):
    ax = c.a["axis"]
    idx = ", ".join([":"] * ax + [f"{c.a['start']}:{'' if c.a['end'] is None else c.a['end']}"
                                   + (f":{c.a['step']}" if c.a["step"] != 1 else "")])
    return Lowered(None, f"{c.args[0]}[{idx}]")


register(OpDef(
    name="slice", inputs=("x",),
    attrs=(Attr("axis", "axes"), Attr("start", "int", 0), Attr("end", "int", None), Attr("step", "int", 1, lo=1)),
    infer=_slice_infer, flops=lambda ins, outs, a: Dim.const(0), lower=_slice_lower,
    traits=frozenset({"parameter_free", "layout"}), glyph="slice", draw="index", doc="x[start:end:step] along an axis.",
))


def _positions_infer(ins, a, facts):
    x = ins[0]
    ax = resolve_axis(x, a["axis"])
    out = TensorType.make([x.shape[ax]], "int64", [x.axis_names()[ax]])
    return Out([out.model_copy(update={"vmax": x.shape[ax], "vmin": Dim.const(0)})],
               Signature(((Ax(KEEP, (Ref(0, ax),)),),)), {"axis": ax})


register(OpDef(
    name="positions", inputs=("x",), attrs=(Attr("axis", "axes", 1),), infer=_positions_infer,
    flops=lambda ins, outs, a: Dim.const(0),
    lower=lambda c: Lowered(None, f"torch.arange({c.size(0, c.a['axis'])}, "
                                  f"device={c.args[0]}.device)"),
    traits=frozenset({"parameter_free", "source"}), aliases=("arange_like",), glyph="pos",
    doc="0, 1, ..., n-1 for the size n of an axis of x (int64), e.g. for position embeddings.",
))


def _expand_infer(ins, a, facts):
    t, like = ins
    if t.rank != like.rank:
        raise OpError("E0202", f"expand_like: ranks differ ({t.rank} vs {like.rank})", arg=0)
    axes = _axes_list(like, a["axes"])
    shape = list(t.shape)
    for ax in axes:
        if t.shape[ax] != 1:
            raise OpError("E0201", f"expand_like: axis {ax} of {t} must have size 1 to expand", arg=0)
        shape[ax] = like.shape[ax]
    names = [n or m for n, m in zip(t.axis_names(), like.axis_names())]
    sig = Signature((tuple(Ax(KEEP, (Ref(1, k),)) if k in axes else Ax(KEEP, (Ref(0, k),)) for k in range(t.rank)),))
    return Out([TensorType.make(shape, t.dtype, names)], sig, {"axes": axes})


def _expand_lower(c):
    axes = c.a["axes"]
    sizes = [c.size(1, i) if i in axes else "-1" for i in range(c.ins[0].rank)]
    return Lowered(None, f"{c.args[0]}.expand({', '.join(sizes)})")


register(OpDef(
    name="expand_like", inputs=("x", "like"), attrs=(Attr("axes", "axes", 0),), infer=_expand_infer,
    flops=lambda ins, outs, a: Dim.const(0), lower=_expand_lower, traits=frozenset({"parameter_free", "layout"}),
    glyph="expand", doc="Broadcast size-1 axes of x to the sizes of `like` (e.g. a class token to the batch).",
))


# -- contractions ----------------------------------------------------------------------------------
def _matmul_infer(ins, a, facts):
    x, y = ins
    if x.rank == 0 or y.rank == 0:
        raise OpError("E0202", "matmul needs tensors of rank 1 or more")
    if x.dtype != y.dtype:
        raise OpError("E0208", f"matmul of {x.dtype} and {y.dtype}", arg_labels={0: x.dtype, 1: y.dtype})
    if x.dtype == "bool":
        raise OpError("E0208", "matmul of bool tensors is not defined", arg_labels={0: "bool", 1: "bool"},
                      help="convert the masks to numbers first (e.g. `where(m, ones, zeros)`)")
    xs, ys = list(x.shape), list(y.shape)
    xv, yv = x.rank == 1, y.rank == 1
    if xv:
        xs = [Dim.const(1)] + xs
    if yv:
        ys = ys + [Dim.const(1)]
    if xs[-1] != ys[-2]:
        raise OpError("E0201", f"matmul: inner sizes differ ({xs[-1]} vs {ys[-2]})",
                      arg_labels={0: str(x), 1: str(y)},
                      notes=["matmul contracts the last axis of the left with the second-to-last of the right"])
    batch = broadcast(TensorType.make(xs[:-2]), TensorType.make(ys[:-2]), "@")
    out = list(batch.shape) + ([] if xv else [xs[-2]]) + ([] if yv else [ys[-1]])
    # batch axes broadcast; rows come from a, columns from b; a's last axis meets b's rows
    bsig = broadcast_sig([TensorType.make(x.shape[:-2]), TensorType.make(y.shape[:-2] if not yv else ())], batch)
    axes = bsig.outs[0] + (() if xv else (Ax(KEEP, (Ref(0, x.rank - 2),)),)) + (() if yv else (Ax(KEEP, (Ref(1, y.rank - 1),)),))
    sig = Signature((axes,), contracted=((Ref(0, x.rank - 1), Ref(1, 0 if yv else y.rank - 2)),))
    return Out([TensorType.make(out, x.dtype)], sig)


register(OpDef(
    name="matmul", inputs=("a", "b"), infer=_matmul_infer,
    flops=lambda ins, outs, a: 2 * prod(outs[0].shape) * ins[0].shape[-1],
    lower=lambda c: Lowered(None, f"torch.matmul({c.args[0]}, {c.args[1]})"),
    traits=frozenset({"parameter_free", "contraction"}), glyph="@", signal=S.contraction, doc="Batched matrix product (also `a @ b`).",
))


def _einsum_parse(eq: str, n: int):
    def bad(message: str, at: tuple[int, int] | None = None, label: str = "", help: str | None = None):
        return OpError("E0207", message, label=label if at else "", attr="equation", at=at, help=help)

    if "->" not in eq:
        raise bad("an einsum equation needs `->`", help='write the output subscripts too: "ij,jk->ik"')
    arrow = eq.index("->")
    lhs, rhs_at = eq[:arrow], arrow + 2
    terms, off = [], 0
    for part in lhs.split(","):
        terms.append((part, off))
        off += len(part) + 1
    if len(terms) != n:
        raise bad(f"the equation has {len(terms)} operands, {n} tensors were given", (0, arrow),
                  f"{len(terms)} operand{'s' if len(terms) != 1 else ''}")
    for t, off in terms + [(eq[rhs_at:], rhs_at)]:
        m = re.search(r"[^A-Za-z ]", t)
        if m:
            raise bad(f"einsum subscripts must be letters, got `{t.replace(' ', '')}`", (off + m.start(), 1),
                      "not a letter")
    rhs = eq[rhs_at:].replace(" ", "")
    seen: set = set()
    for k, ch in enumerate(eq[rhs_at:]):
        if ch in seen:
            raise bad("an output subscript appears twice", (rhs_at + k, 1), "again here")
        if ch != " ":
            seen.add(ch)
    inputs = set(lhs)
    for k, ch in enumerate(eq[rhs_at:]):
        if ch != " " and ch not in inputs:
            raise bad(f"output subscript `{ch}` is on no input", (rhs_at + k, 1), "on no input")
    return [t.replace(" ", "") for t, _ in terms], rhs


def _einsum_sizes(ins, eq):
    terms, rhs = _einsum_parse(eq, len(ins))
    sizes: dict[str, Dim] = {}
    for i, (t, x) in enumerate(zip(terms, ins)):
        if len(t) != x.rank:
            raise OpError("E0207", f"operand {i} has {len(t)} subscripts but is {x.rank}-d", arg=i)
        for ch, d in zip(t, x.shape):
            if ch in sizes and sizes[ch] != d and d != 1 and sizes[ch] != 1:
                raise OpError("E0201", f"einsum: `{ch}` is {sizes[ch]} in one operand and {d} in another", arg=i)
            if ch not in sizes or sizes[ch] == 1:
                sizes[ch] = d
    return terms, rhs, sizes


def _einsum_infer(ins, a, facts):
    for i, t in enumerate(ins[1:], 1):
        if t.dtype != ins[0].dtype:
            raise OpError("E0208", f"einsum of {ins[0].dtype} and {t.dtype}", arg=i)
    if ins and ins[0].dtype == "bool":
        raise OpError("E0208", "einsum of bool tensors is not defined", arg=0, label="bool tensor")
    terms, rhs, sizes = _einsum_sizes(ins, a["equation"])
    refs = {}
    for i, t in enumerate(terms):
        for k, ch in enumerate(t):
            if ins[i].shape[k] == sizes[ch]:   # an operand's size-1 axis broadcasts: not the same axis
                refs.setdefault(ch, []).append(Ref(i, k))
    sig = Signature((tuple(Ax(KEEP, tuple(refs.get(ch, ())), name=ch) for ch in rhs),),
                    contracted=tuple(tuple(refs[ch]) for ch in sorted(set("".join(terms)) - set(rhs)) if ch in refs))
    return Out([TensorType.make([sizes[c] for c in rhs], ins[0].dtype)], sig, {"sizes": sizes})


register(OpDef(
    name="einsum", inputs=("xs*",), attrs=(Attr("equation", "str"),), infer=_einsum_infer,
    flops=lambda ins, outs, a: 2 * prod(a["sizes"].values()),
    lower=lambda c: Lowered(None, f"torch.einsum({pyval(c.a['equation'])}, {', '.join(c.args)})"),
    traits=frozenset({"parameter_free", "contraction"}), glyph="einsum", signal=S.contraction,
    doc='Einstein summation: einsum("bhqd,bhkd->bhqk", q, k).',
))
