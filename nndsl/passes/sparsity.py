"""The sparsity pass: for every weight a `sparsity` declaration names, the most specific rule (picked as
init rules are, nndsl/passes/init.py), evaluated against the weight's dense shape and planned
(nndsl/sparsity): the layer's parameters become what it stores (the weight and its mask, the blocks,
the two factors), each with its `layout` facet, and the layer gets a `structure` facet and its real
FLOPs. Runs before the init pass, which reads the density and the factors.
"""
from __future__ import annotations

import weakref

import difflib
import math
from pathlib import Path

from ..diagnostics import Abort, Diagnostic, Label, Sink
from ..evaluate import Evaluator, Reported, Scope
from ..facets import attach
from ..facets.layout import Layout, Structure
from ..ir import IR, InitDecl
from ..recipe import P
from ..sparsity import FROZEN, RULES, Misfit, Plan, Weight, erk_densities, plan
from ..syntax import ast as A
from ..types import dtype_bytes
from .init import _key_text, bind_rule, decl_scope, select

MAX_MASK_BYTES = 1 << 31        # a mask or layout file larger than this is refused before it is read


class _Host:
    """The evaluator's host for rule arguments: numbers, strings and the block's parameters."""

    def __init__(self):
        self.ev = Evaluator(weakref.proxy(self))   # no cycle: freed by reference counting (compiler._no_gc)

    def missing(self, e: A.Name, scope: Scope, ensure: bool):
        self.ev.fail("E0101", f"unknown name `{e.id}` in a sparsity rule", e.span, label="not found",
                     help="rules may use the block's parameters, numbers and strings")

    def call(self, e: A.Call, scope: Scope, name, ensure: bool):
        if self.ev.is_builtin(e):
            return self.ev.builtin(e.func.id, e, scope, ensure)
        self.ev.fail("E0701", "a sparsity rule's arguments are numbers or strings", e.span)

    def pipe(self, e, scope: Scope, name):
        self.ev.fail("E0701", "a pipeline cannot be used in a sparsity rule", e.span)

    def tensor_op(self, op, tensors, attrs, name, scope, span, arg_spans):
        self.ev.fail("E0701", "tensor arithmetic cannot be used in a sparsity rule", span)

    def shape_of(self, t):
        raise Reported()


def resolve_sparsity(ir: IR, sink: Sink) -> None:
    if ir.meta.sparsity:
        _resolve(ir, sink)


def _structurable(node, p) -> str:
    """"linear" or "conv" for a weight a rule may structure, else ""."""
    from .. import ops as O

    od = O.get(node.op)
    kind = getattr(od, "sparse", "") if od is not None else ""
    return kind if kind and p.name == "weight" and p.kind == "param" else ""


def _resolve(ir: IR, sink: Sink) -> None:
    decls = ir.meta.sparsity
    used: set[int] = set()
    failed: set[int] = set()
    host = _Host()
    tied_targets = {p.tied_to for n in ir.nodes() for p in n.params if p.tied_to}
    # declarations whose key names some linear or conv weight, even where a more specific one wins
    structurable: set[int] = set()
    for _ in select(ir, decls, lambda node, p: bool(_structurable(node, p)), structurable):
        pass
    picks = []
    for node, p, d in select(ir, decls, lambda node, p: p.kind == "param", used):
        kind = _structurable(node, p)
        if not kind:
            if d.op is not None and d.op in (node.op, node.local) and d.param is not None or \
                    d.param is not None and d.param != "weight" and d.nodes is None:
                sink.add(Diagnostic(code="E0702", message=f"`{node.id}.{p.name}` cannot be stored sparse or "
                                    "structured: rules apply to the weights of linear and conv layers",
                                    span=d.key_span, label=f"names `{node.op}.{p.name}`"), d.scope)
                failed.add(d.order)
            continue
        if p.tied_to is not None or f"{node.id}.{p.name}" in tied_targets:
            other = p.tied_to or next(f"{n.id}.{q.name}" for n in ir.nodes() for q in n.params
                                      if q.tied_to == f"{node.id}.{p.name}")
            sink.add(Diagnostic(code="E0702", message=f"`{node.id}.weight` is shared with `{other}` through `tie=`: "
                                "a tied weight stays dense", span=d.span, label="applies to a tied weight",
                                secondary=[Label(span=node.span, message="the layer")] if node.span else []),
                     d.scope)
            failed.add(d.order)
            continue
        picks.append((node, p, d, kind))
    evaluated = []
    for node, p, d, kind in picks:
        if d.order in failed:
            continue
        try:
            rule, args, frozen = _evaluate(d, d.rule, host)
            evaluated.append((node, p, d, kind, rule, args, frozen))
        except Abort as a:
            sink.add(a.diagnostic, d.scope)
            failed.add(d.order)
        except Reported:
            failed.add(d.order)
    # erk: per-layer densities solved over the weights each declaration covers
    groups: dict[int, list[int]] = {}
    for i, (node, p, d, kind, rule, args, frozen) in enumerate(evaluated):
        if rule == "erk":
            groups.setdefault(d.order, []).append(i)
    for order, idx in groups.items():
        args0 = evaluated[idx[0]][5]
        dens = args0["density"]
        if not 0 < dens <= 1:
            continue                           # reported by the plan
        got = erk_densities([tuple(evaluated[i][1].shape) for i in idx], dens)
        for i, g in zip(idx, got):
            ev = evaluated[i]
            evaluated[i] = ev[:5] + ({**ev[5], "layer_density": g},) + ev[6:]
    for node, p, d, kind, rule, args, frozen in evaluated:
        if d.order in failed:
            continue
        w = Weight(op=node.op, shape=tuple(p.shape), groups=int(node.attrs.get("groups", 1) or 1), conv=kind == "conv")
        file = ""
        try:
            if rule == "mask" or rule == "block" and args.get("layout") is not None:
                file, args = _read_mask_file(d, rule, args, w)
            pl = plan(rule, args, w) if rule is not None else None
        except Misfit as m:
            sink.add(Diagnostic(code=m.code, message=f"`{node.id}.weight`: {m.message}", span=d.rule.span,
                                label=f"applied to {node.id}.weight {list(p.shape)}",
                                secondary=[Label(span=node.span, message="the layer")] if node.span else []),
                     d.scope)
            failed.add(d.order)
            continue
        except Abort as a:
            sink.add(a.diagnostic, d.scope)
            failed.add(d.order)
            continue
        if pl is None:                          # bare `frozen`: dense, not trained
            p.trainable = False
            continue
        _apply(node, p, pl, d, frozen, file)
    for d in decls:
        if d.order not in structurable and d.order not in failed:
            what = "the layers this statement creates" if d.nodes is not None else "this block"
            sink.warning("W0701", f"sparsity key `{_key_text(d)}` matches no weight of {what}", d.key_span,
                         d.scope, label="matches nothing",
                         help="keys name a layer or an op kind (`linear.weight`, `conv2d.weight`); rules apply to "
                         "the weights of linear and conv layers")


def _apply(node, p, pl: Plan, d: InitDecl, frozen: bool, file: str) -> None:
    dense = tuple(p.shape)
    i = node.params.index(p)
    new = []
    for s in pl.stored:
        if s.name == "weight":
            q = p
        else:
            q = P(s.name, s.shape, kind=s.kind, dtype=s.dtype)
        numel = math.prod(s.shape)
        attach(q, Layout(kind=pl.kind, stored=numel, bytes=numel * dtype_bytes(s.dtype), density=pl.density,
                         of="weight" if s.name != "weight" else "", dense_shape=dense))
        if frozen and q.kind == "param":
            q.trainable = False
        new.append(q)
    node.params[i:i + 1] = new
    stored = sum(math.prod(s.shape) for s in pl.stored if s.kind == "param")
    numel = math.prod(dense)
    dense_flops = node.flops
    if dense_flops is not None:
        node.flops = dense_flops // numel * stored if pl.kind in ("monarch", "lowrank", "block") and \
            pl.kernel != "dense+mask" else dense_flops
    fi = p.fan_in if p.fan_in is not None else (dense[1] * math.prod(dense[2:]) if len(dense) > 1 else dense[0])
    fo = p.fan_out if p.fan_out is not None else dense[0] * math.prod(dense[2:])
    attach(node, Structure(kind=pl.kind, rule=pl.rule, args={k: v for k, v in pl.args.items()},
                           dense_shape=dense, stored=stored, nonzero=pl.nonzero, density=pl.density,
                           kernel=pl.kernel, gpu=pl.gpu, note=pl.note, fan_in=max(1, round(fi * pl.fan_factor)),
                           fan_out=max(1, round(fo * pl.fan_factor)), dense_fan_in=fi, dense_fan_out=fo,
                           energy=pl.energy, paths=pl.paths,
                           dense_flops=dense_flops.value if dense_flops is not None and dense_flops.is_const else None,
                           declared_at=f"{d.span.file}:{d.span.line}", mask_file=file, frozen=frozen))


def _evaluate(d: InitDecl, e, host: _Host):
    """(rule or None for bare `frozen`, bound arguments, frozen)."""
    if isinstance(e, A.Name) and e.id == FROZEN:
        return None, {}, True
    if isinstance(e, A.Call) and isinstance(e.func, A.Name) and e.func.id == FROZEN:
        if len(e.args) != 1 or e.args[0].name is not None:
            raise Abort(Diagnostic(code="E0701", message="`frozen` takes one rule: `frozen(monarch(4))`, or none "
                                   "(a dense weight that is not trained)", span=e.span))
        rule, args, _ = _evaluate(d, e.args[0].value, host)
        return rule, args, True
    if isinstance(e, A.Name):
        fname, fspan, args = e.id, e.span, []
    elif isinstance(e, A.Call) and isinstance(e.func, A.Name):
        fname, fspan, args = e.func.id, e.func.span, e.args
    else:
        raise Abort(Diagnostic(code="E0701", message="a sparsity rule is a call: `random(0.1)`, `monarch(blocks=4)`",
                               span=e.span, label="not a rule"))
    rule = RULES.get(fname)
    if rule is None:
        near = difflib.get_close_matches(fname, [*RULES, FROZEN], n=1)
        raise Abort(Diagnostic(code="E0701", message=f"unknown sparsity rule `{fname}`", span=fspan,
                               label="no rule of this name",
                               help=f"did you mean `{near[0]}`?" if near else
                               f"rules: {', '.join(sorted([*RULES, FROZEN]))}"))
    bound = bind_rule(fname, rule.args, rule.types, args, decl_scope(d), host.ev, e.span, "E0701",
                      "bind the dim with `--dim`")
    return fname, dict(bound), False


def _read_mask_file(d: InitDecl, rule: str, args: dict, w: Weight) -> tuple[str, dict]:
    """A mask (or block layout) file named by the spec: a `.npy` file under the spec's directory, read
    without pickles after its header is checked (shape, dtype, size); its values must be 0 or 1."""
    key = "file" if rule == "mask" else "layout"
    name = args[key]
    span = d.rule.span

    def bad(msg, help=None):
        raise Abort(Diagnostic(code="E0704", message=msg, span=span, help=help))

    rel = Path(name)
    if not name or rel.is_absolute() or ".." in rel.parts or rel.suffix != ".npy" or "\x00" in name:
        bad(f"mask file `{name[:80]}` must be a relative `.npy` path under the spec's directory",
            help="save one with numpy.save(\"mask.npy\", mask) next to the spec")
    base = Path(d.span.file).resolve().parent if d.span.file and not d.span.file.startswith("<") else Path.cwd()
    path = base / rel
    try:
        inside = path.resolve().is_relative_to(base.resolve())
    except (OSError, RuntimeError):          # a symlink loop
        inside = False
    if not inside:
        bad(f"mask file `{name[:80]}` leads outside the spec's directory (through a link)")
    if path.exists() and not path.is_file():     # a FIFO or a device would block or never end
        bad(f"mask file `{name[:80]}` is not a regular file")
    if rule == "mask":
        want = w.shape
    else:
        b = args["size"]
        if w.out % b or w.cin % b:
            raise Misfit("E0702", f"{b}x{b} blocks do not divide the {w.out}x{w.cin} weight")
        want = (w.out // b, w.cin // b)
    import numpy as np

    try:
        with open(path, "rb") as fh:
            size = path.stat().st_size
            if size > MAX_MASK_BYTES:
                bad(f"mask file `{name}` is {size:,} bytes, beyond the limit of {MAX_MASK_BYTES:,}")
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                bad(f"mask file `{name}`: unsupported .npy version {version}")
            if dtype.hasobject:
                bad(f"mask file `{name}` holds Python objects; masks are bool or numbers")
            if tuple(shape) != tuple(want):
                bad(f"mask file `{name}` has shape {list(shape)}, the {'weight' if rule == 'mask' else 'block grid'} "
                    f"is {list(want)}")
            data = np.fromfile(fh, dtype=dtype, count=math.prod(shape)) if math.prod(shape) else np.zeros(0)
    except OSError as e:
        bad(f"cannot read mask file `{name}`: {e.strerror or e}")
    except ValueError as e:
        bad(f"mask file `{name}` is not a .npy array: {str(e)[:120]}")
    if data.size != math.prod(want):
        bad(f"mask file `{name}` is truncated")
    nz = np.count_nonzero(data)
    if not np.all((data == 0) | (data == 1)):
        bad(f"mask file `{name}` holds values other than 0 and 1")
    out = dict(args)
    if rule == "mask":
        out["file_density"] = nz / max(1, data.size)
    else:
        out["layout_blocks"] = int(nz)
        if nz == 0:
            raise Misfit("E0703", f"layout file `{name}` keeps no block: the layer's output would not depend on its input")
    return str(path), out
