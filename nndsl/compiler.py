"""The pipeline: load -> parse -> elaborate -> passes. Returns diagnostics and the IR."""
from __future__ import annotations

import difflib
import gc
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .diagnostics import Abort, Diagnostic, NNDSLError, Sink
from .elaborate import Elaborator, Reported
from .fastmodel import make
from .ir import IR, ModelOutput
from .limits import DEFAULT, Limits
from .loader import Loader, Program, file_span
from .passes.axes import AxesWalk
from .passes.ensures import check_ensures
from .passes.shapes import ShapeWalk, infer_shapes
from .passes.validate import NodeChecks, validate
from .syntax import ast as A


@dataclass
class CheckResult:
    diagnostics: list[Diagnostic]
    ir: IR | None
    sources: dict[str, str] = field(default_factory=dict)
    omitted: dict[str, int] = field(default_factory=dict)   # diagnostics beyond the caps, counted
    models: list[str] = field(default_factory=list)         # the models the checked file defines

    @property
    def ok(self) -> bool:
        return self.ir is not None and not any(d.is_error for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    def _repr_html_(self) -> str:
        """Diagnostics (or the model's inputs, outputs and size) as HTML, for Jupyter."""
        from .notebook import check_html

        return check_html(self)

    def raise_for_errors(self) -> "CheckResult":
        if not self.ok:
            raise NNDSLError(self.errors or self.diagnostics, self.sources, self.omitted)
        return self


# The ordered pass pipeline after elaboration; each pass takes (ir, state, sink).
PIPELINE: tuple[tuple[str, Callable], ...] = (
    ("walk", lambda ir, st, sink: node_walk(ir, st, sink)),
    ("ensures", lambda ir, st, sink: check_ensures(ir, st["shapes"], sink)),
    ("equivariance", lambda ir, st, sink: _symmetry(ir, sink)),
    ("validate", lambda ir, st, sink: validate(ir, sink, st["limits"], st["checks"])),
    ("sparsity", lambda ir, st, sink: _resolve_sparsity(ir, sink)),
    ("init", lambda ir, st, sink: _resolve_inits(ir, sink)),
    ("parametrize", lambda ir, st, sink: _parametrize(ir, st, sink)),
    ("signal", lambda ir, st, sink: _signal(ir, st, sink)),
)


def node_walk(ir: IR, st: dict, sink: Sink) -> None:
    """The passes that compute, node by node, from a node and its producers: shapes (which make the
    parameters, dense), axes, and what validation reads. They share one walk over the nodes
    in creation order (producers first): each visits a node right after the one before it, while the
    node's records are still in the CPU's caches. A walk per pass read every record from memory again; on
    a large graph that, not the work, was the cost. Each keeps what it gathers until its `finish` or its
    place in PIPELINE."""
    shapes, axes, checks = ShapeWalk(ir, sink, st["dims"]), AxesWalk(ir), NodeChecks()
    shape, axis, check = shapes.visit, axes.visit, checks.visit
    for node in ir.nodes():
        shape(node)
        axis(node)
        check(node)
    st["shapes"] = shapes.finish()
    ir.axes = axes.finish()
    st["checks"] = checks


def _parametrize(ir: IR, st: dict, sink: Sink) -> None:
    if ir.meta.parametrization is not None and not sink.has_errors:
        from .passes.parametrize import parametrize

        parametrize(ir, sink, st["at"])


def _signal(ir: IR, st: dict, sink: Sink) -> None:
    if st.get("signal") and not sink.has_errors:
        from .passes.signal import analyse

        st["signal_report"] = ir.signal = analyse(ir, sink, st["dims"])


def _symmetry(ir: IR, sink: Sink) -> None:
    if (ir.meta.claims or ir.meta.frames) and not sink.has_errors:
        from .passes.equivariance import check_symmetry

        check_symmetry(ir, sink)


def _resolve_sparsity(ir: IR, sink: Sink) -> None:
    if ir.meta.sparsity and not sink.has_errors:
        from .passes.sparsity import resolve_sparsity

        resolve_sparsity(ir, sink)


def _resolve_inits(ir: IR, sink: Sink) -> None:
    if ir.meta.inits:              # imported only for specs that declare rules: start-up time counts
        from .passes.init import resolve_inits

        resolve_inits(ir, sink)


def _pick_model(prog: Program, model: str | None, sink: Sink) -> A.BlockDef | None:
    models = list(prog.local_models)
    if model is not None:
        for m in models:
            if m.name == model:
                return m
        bd = prog.blocks.get(model)
        if isinstance(bd, A.BlockDef):
            return bd
        names = [m.name for m in models] + [n for n in prog.blocks if n not in {m.name for m in models}]
        sug = difflib.get_close_matches(model, names, n=1)
        sink.error("E0110", f"no model named `{model}` in {prog.root}", file_span(prog.root),
                   help=f"did you mean `{sug[0]}`?" if sug else
                   (f"models here: {', '.join(m.name for m in models)}" if models else None))
        return None
    if len(models) == 1:
        return models[0]
    if not models:
        sink.error("E0110", f"{prog.root} defines no model", file_span(prog.root),
                   help="declare one with `model Name { ... }`, or pick a block with `-m NAME`")
        return None
    sink.error("E0110", f"{prog.root} defines {len(models)} models; choose one", models[1].name_span,
               label="a second model",
               help=f"pass `-m NAME` (or model=...): {', '.join(m.name for m in models)}")
    return None


def _coerce_cli(value: Any, typ: str):
    """A `--dim` value as the parameter's type. Raises ValueError (reported as E0305) when it is not one."""
    if not isinstance(value, str):
        return value
    v = value.strip()
    if typ in ("int", "float", "dims") or typ == "":
        from .syntax.parser import parse_number
        if typ == "dims":
            return [_coerce_cli(x, "int") for x in v.strip("[]").split(",") if x.strip()]
        n = parse_number(v)
        if typ == "float":
            return float(n)
        if isinstance(n, float):
            if not n.is_integer():
                raise ValueError(v)
            n = int(n)
        return n
    if typ == "bool":
        if v.lower() in ("true", "1", "yes"):
            return True
        if v.lower() in ("false", "0", "no"):
            return False
        raise ValueError(v)
    return v


@contextmanager
def _no_gc():
    """The front end allocates many small, long-lived objects and no cycles worth collecting while it
    runs; the cyclic GC would rescan them again and again (it doubled the time of a 10k-op check). At the
    end they go to the oldest generation at once (freeze + unfreeze moves lists, it scans nothing), where
    a full collection finds any cycles among them later; left in the youngest, the first allocation after
    the check would scan them all (half a second for 10,000 ops)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def check(path: str | Path | None = None, *, source: str | None = None, model: str | None = None,
          dims: dict[str, Any] | None = None, passes: bool = True, filename: str = "<string>",
          limits: Limits | None = None, import_root: str | Path | None = None,
          strict_dims: bool = True, signal: bool = False) -> CheckResult:
    """Check a spec. `dims` binds model parameters and free dims (values may be strings, as from the CLI).
    `limits` bounds the work (see nndsl.limits); `import_root` confines imports to a directory. With
    `strict_dims=False`, dims the model does not have are ignored instead of reported. With `signal`, the
    signal-propagation pass runs too (its warnings join the diagnostics; `ir.signal` is its report)."""
    with _no_gc():
        return _check(path, source, model, dims, passes, filename, limits or DEFAULT, import_root, strict_dims,
                      signal)


def _check(path, source, model, dims, passes, filename, limits: Limits, import_root, strict_dims=True,
           signal=False) -> CheckResult:
    sink = Sink(limits)
    loader = Loader(sink, limits, import_root)
    try:
        prog = loader.load_path(path) if source is None else loader.load_text(source, str(path or filename))
    except RecursionError:
        sink.error("E0112", "the spec is nested too deeply", file_span(str(path or filename)))
        return CheckResult(sink.sorted(), None, omitted=sink.omitted)
    ir = None
    try:
        if not sink.has_errors:
            bd = _pick_model(prog, model, sink)
            if bd is not None:
                ir = _elaborate_and_run(prog, bd, dims or {}, sink, passes, limits, strict_dims, signal)
    except Abort as e:
        sink.add(e.diagnostic)
    except Reported:
        pass
    except RecursionError:
        sink.error("E0112", "the spec is nested too deeply to check", file_span(prog.root))
    except Exception as e:  # noqa: BLE001 - an internal error must never surface as a traceback
        tb = traceback.extract_tb(e.__traceback__)[-1]
        sink.error("E9999", f"internal compiler error: {type(e).__name__}: {e}",
                   notes=[f"at {Path(tb.filename).name}:{tb.lineno}"],
                   help="this is a bug in nndsl; please report it with the spec")
    return CheckResult(sink.sorted(), ir, prog.sources, omitted=sink.omitted,
                       models=[m.name for m in prog.local_models])


def _elaborate_and_run(prog: Program, bd: A.BlockDef, dims: dict[str, Any], sink: Sink, passes: bool,
                       limits: Limits = DEFAULT, strict_dims: bool = True, signal: bool = False) -> IR:
    param_types = {p.name: p.type for p in bd.params}
    overrides, free = {}, {}
    for k, v in dims.items():
        try:
            if k in param_types:
                overrides[k] = _coerce_cli(v, param_types[k])
            else:
                free[k] = _coerce_cli(v, "int")
        except ValueError:
            sink.error("E0305", f"cannot read `{k}={str(v)[:40]}` as {param_types.get(k, 'int')}",
                       file_span(bd.span.file), help="give a number, e.g. `--dim B=8`")
    el = Elaborator(prog, sink, limits)
    ir = el.build(bd, overrides)
    inst = ir.meta.instances[""]
    ir.meta.outputs = [make(ModelOutput, name=n, node=node, port=port)
                       for (node, port), n in zip(inst.outputs, inst.output_names)]
    bad = [k for k in free if k not in ir.meta.free_dims]
    for k in bad if strict_dims else ():
        cands = difflib.get_close_matches(k, list(param_types) + ir.meta.free_dims, n=1)
        sink.error("E0305", f"`{k}` is neither a parameter of `{bd.name}` nor a free dim of its inputs",
                   file_span(bd.span.file),
                   help=f"did you mean `{cands[0]}`?" if cands else
                   f"parameters: {', '.join(param_types) or 'none'}; free dims: {', '.join(ir.meta.free_dims) or 'none'}")
    for k, v in free.items():
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= 2 ** 40:
            sink.error("E0305", f"a dim must be an integer from 1 to 2**40, got `{k}={v}`", file_span(bd.span.file))
    free = {k: v for k, v in free.items() if k not in bad and isinstance(v, int) and 0 < v <= 2 ** 40}
    if passes:
        def at(extra: dict) -> IR | None:
            """The model elaborated again with some parameters changed, through shape inference (None if
            it does not check): the parametrization pass compares shapes at two widths."""
            s2 = Sink(limits)
            try:
                ir2 = Elaborator(prog, s2, limits).build(bd, {**overrides, **extra})
                infer_shapes(ir2, s2, free)
            except (Abort, Reported):
                return None
            return None if s2.has_errors else ir2

        state: dict[str, Any] = {"dims": free, "limits": limits, "signal": signal, "at": at}
        for _name, fn in PIPELINE:
            fn(ir, state, sink)
    return ir
