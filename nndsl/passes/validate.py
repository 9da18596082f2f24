"""Structural validation and the IR verifier (every node checked against its op record)."""
from __future__ import annotations

from .. import ops as O
from ..diagnostics import Sink
from ..ir import IR
from ..limits import DEFAULT, Limits
from ..pyemit import reserved_by_torch


def owns_module(op: str) -> bool:
    """The node becomes an attribute of its block's module (a submodule or a parameter)."""
    od = O.get(op)
    return od is not None and bool(od.traits & {"weighted", "pool"})


def _reserved(sink: Sink, name: str, what: str, span, context: str) -> None:
    sink.error("E0117", f"`{name}` cannot name {what}: PyTorch reserves it", span, context,
               label=f"`{name}` is an attribute of every torch.nn.Module",
               help=f"rename it, e.g. `{name}_` or `{name}_layer`")


def _check_instance_names(ir: IR, sink: Sink) -> None:
    for path, inst in ir.meta.instances.items():
        if path:
            parent = inst.parent or ""
            seg = path[len(parent) + 1:].split(".")[0] if parent else path.split(".")[0]
            if reserved_by_torch(seg):
                _reserved(sink, seg, "a block instance", inst.span, parent)


def constant_nodes(ir: IR) -> set[str]:
    """Nodes whose value is known when the module is built: `constant` sources, and parameter-free,
    non-random ops of them in the same scope."""
    const: set[str] = set()
    for n in ir.nodes():
        od = O.get(n.op)
        if od is None:
            continue
        if "constant" in od.traits:
            const.add(n.id)
            continue
        srcs = ir.inputs_of(n.id)
        if srcs and "weighted" not in od.traits and "random" not in od.traits and \
                all(u in const and ir.node(u).scope == n.scope for u, _p in srcs):
            const.add(n.id)
    return const


def check_buffers(ir: IR, sink: Sink, buffers: list) -> None:
    """Every buffer (`buffers`: the buffer nodes) is made of values known when the module is built;
    records those nodes on the IR."""
    const = None
    for n in buffers:
        if const is None:
            const = constant_nodes(ir)
            ir.meta.constants = [nid for nid in ir.g.nodes if nid in const]
        (src, _p), = ir.inputs_of(n.id)
        if src not in const:
            culprit = _first_runtime(ir, src, const, n.scope)
            what = ir.node(culprit)
            sink.error("E0118", "this buffer depends on a value only known when the model runs", n.span, n.scope,
                       label="computed once, when the module is built",
                       notes=[f"it depends on `{what.binding or what.id}` ({what.op}), known only at run time"
                              if what.op not in ("input", "block_input") else
                              f"it depends on the input `{what.attrs.get('name', what.id)}`"],
                       help="build buffers from `arange` and numbers in the same block")
        elif "." in (n.local or n.id):
            sink.error("E0118", "a buffer must be bound to a plain name", n.span, n.scope,
                       help="write `name = buffer(...)` on its own line")


def _first_runtime(ir: IR, nid: str, const: set[str], scope: str) -> str:
    """The nearest ancestor that makes `nid` a run-time value."""
    seen, stack = set(), [nid]
    while stack:
        cur = stack.pop()
        if cur in seen:
            continue
        seen.add(cur)
        srcs = [u for u, _p in ir.inputs_of(cur) if u not in const]
        if not srcs:
            return cur
        stack.extend(srcs)
    return nid


def model_bytes(ir: IR, kinds=("param", "buffer")) -> tuple[int, object]:
    """Bytes the model's parameters and buffers take (tied ones once), and the node holding the most."""
    from ..types import dtype_bytes

    total, biggest, most = 0, None, -1
    for n in ir.nodes():
        own = sum(p.numel * dtype_bytes(p.dtype) for p in n.params if p.kind in kinds and p.tied_to is None)
        total += own
        if own > most:
            biggest, most = n, own
    return total, biggest


def check_size(ir: IR, sink: Sink, limits: Limits, total: int) -> None:
    """At most `limits.params` parameters (`total`: their count, tied ones once)."""
    if total > limits.params:
        _, biggest = model_bytes(ir, ("param",))
        sink.error("E0112", f"the model has {total:,} parameters, more than the limit of {limits.params:,}",
                   biggest.span if biggest is not None else None, biggest.scope if biggest is not None else "",
                   label="the largest layer",
                   help="raise the limit with --max-params (limits= in the API)")


def _creation_order_is_topological(ir: IR) -> bool:
    """Every edge runs from an earlier node to a later one in the order elaboration created them: the
    invariant passes and backends rely on (ir.py), and a proof that the graph has no cycle, in one look
    per edge."""
    pos = {nid: i for i, nid in enumerate(ir.g._node)}
    return all(pos[u] < pos[v] for v, preds in ir.g._pred.items() for u in preds)


class NodeChecks:
    """What validation reads from each node, gathered node by node (`visit` in creation order), so that
    it can share one walk over the nodes with shape inference (compiler.node_walk): layers with names
    PyTorch reserves, buffers, the parameter count. `validate` reports from it at its place in the
    pipeline."""

    def __init__(self) -> None:
        self.owns: dict[str, bool] = {}
        self.reserved: list = []           # (name, node) of layers whose name PyTorch reserves
        self.buffers: list = []
        self.total = 0                     # trainable-or-not parameters, tied ones once

    def visit(self, n) -> None:
        o = self.owns.get(n.op)
        if o is None:
            o = self.owns[n.op] = owns_module(n.op)
        if o:
            seg = (n.local or n.id).split(".")[0]
            if reserved_by_torch(seg):
                self.reserved.append((seg, n))
        if n.op == "buffer":
            self.buffers.append(n)
        for p in n.params:
            if p.kind == "param" and p.tied_to is None:
                self.total += p.numel


def validate(ir: IR, sink: Sink, limits: Limits = DEFAULT, checks: NodeChecks | None = None) -> None:
    """Creation order topological (every producer made before its consumer), layer and instance names,
    buffers, size. `checks`: what the walk over the nodes gathered, which also means the IR's edges all
    came from `IR.add_edge`, which checks the order as it makes them (without it, the nodes are walked
    here and the order checked edge by edge)."""
    if checks is None:
        checks = NodeChecks()
        for n in ir.nodes():
            checks.visit(n)
        forward = _creation_order_is_topological(ir)
    else:
        forward = ir.forward
    if not forward:
        sink.error("E9999", "internal compiler error: an edge runs against the graph's creation order")
    for seg, n in checks.reserved:
        _reserved(sink, seg, "a layer", n.span, n.scope)
    _check_instance_names(ir, sink)
    check_buffers(ir, sink, checks.buffers)
    check_size(ir, sink, limits, checks.total)
    if not ir.meta.outputs:
        return
    for o in ir.meta.outputs:
        if o.node not in ir.g:
            sink.error("E0303", f"output `{o.name}` names nothing")


def verify(ir: IR) -> list[str]:
    """Check every node against its op's declaration. Returns a list of problems (empty when sound)."""
    problems = []
    order = {nid: i for i, nid in enumerate(ir.g.nodes)}
    for n in ir.nodes():
        ins = ir.inputs_of(n.id)
        for u, _p in ins:
            if order[u] >= order[n.id]:
                problems.append(f"{n.id}: input {u} comes later in node order")
        if n.op in ("input", "block_input"):
            continue
        od = O.get(n.op)
        if od is None:
            problems.append(f"{n.id}: unknown op {n.op}")
            continue
        n_fixed = len(od.inputs) - (1 if od.variadic else 0)
        if len(ins) < n_fixed or (not od.variadic and len(ins) != n_fixed):
            problems.append(f"{n.id}: {len(ins)} inputs for {od.name}{od.inputs}")
        for a in od.attrs:
            if a.name not in n.attrs:
                problems.append(f"{n.id}: attribute {a.name} missing")
        if n.outputs and len(n.outputs) != od.outputs_for(n.attrs):
            problems.append(f"{n.id}: {len(n.outputs)} outputs, op declares {od.outputs_for(n.attrs)}")
    return problems
