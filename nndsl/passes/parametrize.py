"""The parametrization pass: how every parameter's init, its layer's multiplier and its learning rate
scale with width (`parametrization mup(base_width=128)`; sp, ntk, mf, mup).

Which axes grow with width is not guessed from names: the model is elaborated a second time with its
width parameter at `base_width`, and a parameter's fan that differs between the two is infinite (the
method of the mup package's base shapes). Then, per parameter:

  hidden  both fans infinite        mup: Adam lr × 1/m, SGD lr × 1
  input   only fan_out infinite     mup: Adam lr × 1,   SGD lr × m
  output  only fan_in infinite      mup: the layer's input × 1/m (readout), Adam lr × 1, SGD lr × m
  vector  a bias or gain that grows mup: Adam lr × 1,   SGD lr × m
  fixed   nothing grows             × 1

with m = width / base_width; attention logits get 1/d instead of 1/√d (scale √d_base / d). ntk and mf:
weights N(0, 1) with the layer's input × 1/√fan_in (mf: the readout's × 1/fan_in); sp changes nothing.
Writes the `scaling` facet on parameters, `multiplier` on layers, the init facet where ntk/mf set it,
and the attention scale in the node's recipe.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

from .. import ops as O
from ..diagnostics import Abort, Diagnostic, Sink
from ..facets import attach
from ..facets.init import Init
from ..facets.scaling import Multiplier, Scaling
from ..ir import IR
from ..values import decode

KINDS = ("sp", "ntk", "mf", "mup")
ARGS = {"sp": (), "ntk": (), "mf": (), "mup": ("base_width", "width")}
WIDTH_NAMES = ("width", "D", "d_model", "hidden", "dim", "n_embd")


def model_width(ir: IR) -> Optional[int]:
    """The model's width: the parameter the parametrization names (`width=`), else the first int parameter
    called width, D, d_model, hidden, dim or n_embd."""
    params = {k: decode(v) for k, v in ir.meta.instances[""].params.items()}
    decl = ir.meta.parametrization
    name = decl.args.get("width") if decl is not None else None
    if name is None:
        name = next((n for n in WIDTH_NAMES if isinstance(params.get(n), int)), None)
    v = params.get(name) if name is not None else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _fail(msg: str, span, **kw):
    raise Abort(Diagnostic(code="E0504", message=msg, span=span, **kw))


def parametrize(ir: IR, sink: Sink, at_width: Callable[[dict], Optional[IR]]) -> None:
    decl = ir.meta.parametrization
    if decl is None:
        return
    try:
        _run(ir, decl, at_width)
    except Abort as a:
        sink.add(a.diagnostic)
        return
    if decl.name == "mup":
        lin = [n for n in ir.nodes() if (od := O.get(n.op)) is not None and "linear" in od.traits]
        for nid in sorted(_readouts(ir, lin)):
            n = ir.node(nid)
            w = next((p for p in n.params if p.name == "weight"), None)
            f = w.facets.get("init") if w is not None else None
            if "multiplier" in n.facets or (f is not None and f.rule == "zeros"):
                continue
            why = f" (its weight is tied to `{w.tied_to}`, so μP cannot scale it on its own)" if w is not None and \
                w.tied_to else ""
            sink.warning("W0604", f"under μP the readout `{nid}` is neither zero-initialised nor scaled by "
                         f"1/width{why}: its output grows with width", n.span, n.scope, label="the readout",
                         help="initialise it with `init { weight: zeros }`, or untie it so the parametrization "
                              "can scale its input by 1/m")


def _run(ir: IR, decl, at_width) -> None:
    if decl.name not in KINDS:
        import difflib

        near = difflib.get_close_matches(decl.name, KINDS, n=1)
        _fail(f"unknown parametrization `{decl.name}`", decl.span, label="not a parametrization",
              help=f"did you mean `{near[0]}`?" if near else f"one of {', '.join(KINDS)}")
    for k in decl.args:
        if k not in ARGS[decl.name]:
            _fail(f"`{decl.name}` has no argument `{k}`" + (f" (it takes {', '.join(ARGS[decl.name])})"
                                                            if ARGS[decl.name] else " (it takes none)"), decl.span)
    if decl.name == "sp":
        return
    lin = [n for n in ir.nodes() if (od := O.get(n.op)) is not None and "linear" in od.traits
           and (any(p.name == "weight" and p.kind == "param" for p in n.params) or "structure" in n.facets)]
    if decl.name in ("ntk", "mf"):
        from ..sparsity import factor_std
        from .init import param_path, salt

        readouts = _readouts(ir, lin)
        for n in lin:
            st = n.facets.get("structure")          # a structured weight: the dense one's fans, times its density
            stored = [p for p in n.params if p.kind == "param" and (p.name == "weight" or st is not None and
                                                                   (lay := p.facets.get("layout")) and lay.of)]
            fi = st.fan_in if st is not None else (stored[0].fan_in or 1)
            mult = 1.0 / fi if (decl.name == "mf" and n.id in readouts) else 1.0 / math.sqrt(fi)
            attach(n, Multiplier(input=mult))
            for w in stored:                        # entries N(0, 1): factors so that their products are
                if "init" in w.facets or w.tied_to is not None:
                    continue
                std = factor_std(1.0, st.paths) if st is not None and st.kind in ("monarch", "lowrank") else 1.0
                path = param_path(n.id, w.name)
                attach(w, Init(rule="normal", args={"mean": 0.0, "std": 1.0}, declared_at=
                               f"{decl.span.file}:{decl.span.line}", key=f"parametrization {decl.name}", std=std,
                               mean=0.0, m2=1.0, seed=salt(path), path=path, prim="normal",
                               prim_args={"mean": 0.0, "std": std}))
        return
    # mup
    base_width = decl.args.get("base_width")
    if not isinstance(base_width, int) or isinstance(base_width, bool) or base_width < 1:
        _fail("`mup` needs `base_width`, a positive integer: the width its hyperparameters were tuned at",
              decl.span, help="e.g. `parametrization mup(base_width=128)`")
    params = {k: decode(v) for k, v in ir.meta.instances[""].params.items()}
    wname = decl.args.get("width")
    if wname is None:
        wname = next((n for n in WIDTH_NAMES if isinstance(params.get(n), int)), None)
        if wname is None:
            _fail("which model parameter is the width? name it: `mup(base_width=128, width=\"D\")`", decl.span,
                  help=f"model parameters: {', '.join(params) or 'none'}")
    if not isinstance(params.get(wname), int) or isinstance(params.get(wname), bool):
        _fail(f"`width` must name an int parameter of the model; `{wname}` is not one", decl.span,
              help=f"model parameters: {', '.join(params) or 'none'}")
    width = params[wname]
    m = width / base_width
    base = at_width({wname: base_width})
    if base is None:
        _fail(f"the model does not check with `{wname}={base_width}` (its base width), so which axes grow "
              "with width cannot be told", decl.span, help="choose a base width the model accepts")
    base_params = {(n.id, p.name): p for n in base.nodes() for p in n.params}
    for n in ir.nodes():
        for p in n.params:
            if p.kind != "param" or p.tied_to is not None:
                continue
            b = base_params.get((n.id, p.name))
            lay = p.facets.get("layout")
            st = n.facets.get("structure")
            if lay is not None and lay.of and st is not None:    # a factor or block set: its weight's class
                w = base_params.get((n.id, lay.of))
                fi = w is None or w.fan_in != st.dense_fan_in
                fo = w is None or w.fan_out != st.dense_fan_out
                cls = "hidden" if fi and fo else "output" if fi else "input" if fo else "fixed"
            elif b is None:
                grow = [True] * len(p.shape)
            else:
                grow = [x != y for x, y in zip(p.shape, b.shape)] if len(b.shape) == len(p.shape) else \
                    [True] * len(p.shape)
            if lay is not None and lay.of and st is not None:
                pass
            elif p.fan_in is not None and p.fan_out is not None and len(p.shape) >= 2:
                fi = b is None or b.fan_in != p.fan_in
                fo = b is None or b.fan_out != p.fan_out
                cls = "hidden" if fi and fo else "output" if fi else "input" if fo else "fixed"
            else:
                cls = "vector" if any(grow) else "fixed"
            lr_adam = 1.0 / m if cls == "hidden" else 1.0
            lr_sgd = m if cls in ("input", "output", "vector") else 1.0
            attach(p, Scaling(cls=cls, lr_adam=lr_adam, lr_sgd=lr_sgd))
            if cls == "output" and "multiplier" not in n.facets:
                attach(n, Multiplier(input=1.0 / m))
    base_nodes = {n.id: n for n in base.nodes()}
    for n in ir.nodes():
        if n.op != "attention" or n.recipe is None or n.recipe.attrs.get("scale") is not None:
            continue
        d = n.outputs and ir.in_types(n.id)[0].shape[-1]
        bn = base_nodes.get(n.id)
        db = bn is not None and bn.recipe is not None and base.in_types(n.id)[0].shape[-1]
        if d and db and d.is_const and db.is_const and d.value != db.value:
            n.recipe.attrs = {**n.recipe.attrs, "scale": math.sqrt(db.value) / d.value}   # shared: replaced


def _readouts(ir: IR, lin) -> set:
    """Dense layers whose output reaches a model output through no other dense layer."""
    ids = {n.id for n in lin}
    out = set()
    seen = set()
    stack = [o.node for o in ir.meta.outputs]
    while stack:
        nid = stack.pop()
        if nid in seen:
            continue
        seen.add(nid)
        if nid in ids:
            out.add(nid)
            continue
        stack.extend(u for u, _p in ir.inputs_of(nid))
    return out
