"""Fuzzing: a structured generator of well-formed specs over the whole op registry, a mutator of the
examples, and the oracle both are judged by. Used by the hypothesis tests in tests/test_fuzz.py (which
draw the seeds) and, for longer runs before a release, from the command line:

    python -m nndsl.fuzz --time 600 --corpus tests/fuzz_corpus

Every input that once failed is written to the corpus directory; the test suite replays the corpus.

The oracle: `check` never raises and never reports E9999; every error leads to a line of the checked
file (its own span there, or a call site there); rendering never raises; axis identities follow the
signatures (passes.axes.verify_axes); and a spec that checks (with
its free dims bound small) compiles to valid Python, loads, and runs a forward pass on random inputs
of its declared shapes. Anything else is a bug.
"""
from __future__ import annotations

import argparse
import hashlib
import random
import re
import sys
import time
import traceback
from pathlib import Path

FILE = "fuzz.nn"
MAX_RUN_BYTES = 256 << 20   # models larger than this are not built by the oracle
FREE = ("B", "T", "N")
BOUND = {"B": 2, "T": 3, "N": 4}


# -- the structured generator ---------------------------------------------------------------------
class SpecGen:
    """Builds a spec statement by statement; each candidate statement is checked, and kept only if the
    partial spec still checks, so the generated specs are well formed and exercise every op."""

    def __init__(self, rng: random.Random, max_stmts: int = 6):
        from .ops import registry as R

        R._load()
        self.rng = rng
        self.max_stmts = max_stmts
        self.ops = sorted(R.OPS.values(), key=lambda od: od.name)

    # values ------------------------------------------------------------------------------------
    def _axis(self, t, names: bool = True):
        r = self.rng
        if t.rank == 0:
            return "0"
        named = [n for n in t.axis_names() if n]
        if names and named and r.random() < 0.3:
            return r.choice(named)
        return str(r.randrange(-t.rank, t.rank))

    def _pattern(self, t) -> str:
        r = self.rng
        letters = "abcdefghijklmnopqrstuvwxyz"[:t.rank]   # (a rank beyond 26 makes a pattern that does not fit)
        left = list(letters)
        right = list(letters)
        r.shuffle(right)
        if len(right) >= 2 and r.random() < 0.5:  # merge two neighbours on the right
            i = r.randrange(len(right) - 1)
            right = right[:i] + [f"({right[i]} {right[i + 1]})"] + right[i + 2:]
        return f'"{" ".join(left)} -> {" ".join(right)}"'

    def _einsum(self, ts) -> str:
        r = self.rng
        pool = "ijklmn"
        terms, used = [], []
        for t in ts:
            term = "".join(r.choice(pool[:max(1, t.rank + 1)]) for _ in range(t.rank))
            if len(set(term)) != len(term):
                term = pool[:t.rank]
            terms.append(term)
            used += list(term)
        out = "".join(sorted(set(used), key=used.index))
        if out and r.random() < 0.5:
            out = out[:-1]
        return f'"{",".join(terms)}->{out}"'

    def _attr(self, od, a, ins) -> str | None:
        r = self.rng
        t = ins[0] if ins else None
        name, typ = a.name, a.type
        if a.choices:
            return f'"{r.choice(a.choices)}"'
        if name == "pattern":
            return self._pattern(t)
        if name == "equation":
            return self._einsum(ins)
        if name == "sizes" and typ == "kwargs":
            return None
        if typ == "axes":
            if od.name == "expand_like" and t is not None:
                ones = [i for i, d in enumerate(t.shape) if d.is_const and d.value == 1]
                return str(r.choice(ones)) if ones else "0"
            if name in ("axes",) and r.random() < 0.3:
                return f"[{self._axis(t)}]" if t is not None else None
            if name == "dims" and t is not None:
                order = list(range(t.rank))
                r.shuffle(order)
                return "[" + ", ".join(map(str, order)) + "]"
            return self._axis(t) if t is not None else "0"
        if typ == "int":
            return str(r.choice([1, 1, 2, 2, 3, 4, 8] if name not in ("index", "start", "end") else [0, 1, -1, 2]))
        if typ == "float":
            return r.choice(["0.0", "0.1", "0.5", "1.0", "1e-5", "2.0"])
        if typ == "bool":
            return r.choice(["true", "false"])
        if typ == "ints":
            if r.random() < 0.7:
                return str(r.choice([1, 1, 2, 3]))
            return "[" + ", ".join(str(r.choice([1, 2, 3])) for _ in range(r.choice([1, 2, 3]))) + "]"
        if typ == "dims":
            if name == "shape" and t is not None:
                return "[" + ", ".join(r.choice(["-1", "1", "2", "4"]) for _ in range(r.choice([1, 2, 3]))) + "]"
            if name == "sizes" and t is not None:
                return "[" + ", ".join(str(r.choice([1, 2])) for _ in range(r.choice([1, 2, 3]))) + "]"
            return "[" + ", ".join(str(r.choice([1, 2, 4])) for _ in range(r.choice([1, 2]))) + "]"
        if typ == "any":
            if name == "scalar":
                return r.choice(["2", "0.5", "-1", "1e999", "3"])
            if name == "padding":
                return r.choice(["0", "1", '"same"', '"valid"', "[1, 0]"])
            return r.choice(["2", "1", "3"])
        if typ == "str":
            return '"x"'
        if typ == "dim":
            return r.choice(["2", "4", "B"])
        if typ == "group":                  # the grid groups every generated file declares when used
            return r.choice(["R4", "R8"])
        return None

    def call(self, od, env: dict) -> str | None:
        r = self.rng
        tensors = list(env)
        if not od.inputs:
            args = []
            ins = []
        elif "needs_constant" in od.traits:   # `buffer`: its input must be known when the module is built
            args = [f"arange(n={r.choice([1, 2, 3, 4])}) * {r.choice([1, 2, 3])}"]
            ins = []
        else:
            n = len(od.inputs)
            if od.variadic:
                n = r.choice([1, 2, 2, 3]) if od.name not in ("add", "sub", "mul", "div") else r.choice([1, 2])
            names = [r.choice(tensors) for _ in range(n)]
            if r.random() < 0.5:  # same tensor twice is the likeliest to fit
                names = [names[0]] * n
            args = list(names)
            ins = [env[x] for x in names]
        kw = []
        for a in od.attrs:
            if a.required or r.random() < 0.35:
                if od.name in ("add", "sub", "mul", "div") and a.name == "scalar" and len(ins) != 1:
                    continue
                v = self._attr(od, a, ins)
                if v is None:
                    if a.required:
                        return None
                    continue
                kw.append(f"{a.name}={v}")
        return f"{od.name}({', '.join(args + kw)})"

    def generate(self) -> str:
        from .compiler import check

        r = self.rng
        rank = r.choice([1, 2, 2, 3, 3, 4, 4, 5])
        dims = []
        for i in range(rank):
            named = i == 0 or r.random() < 0.2
            dims.append(r.choice(["B", "T", "N"]) if named else str(r.choice([1, 2, 4, 4, 6, 8, 8])))
        # distinct free names per axis keep declared shapes consistent
        seen: set[str] = set()
        for i, d in enumerate(dims):
            if d in seen:
                dims[i] = str(r.choice([2, 4]))
            seen.add(dims[i])
        dtype = " int64" if r.random() < 0.08 else ""
        head = [f"  input x: [{', '.join(dims)}]{dtype}"]
        body: list[str] = []
        env = {}
        res = check(source=_assemble(head, body, "x"), filename=FILE, dims=BOUND, strict_dims=False)
        if not res.ok:
            return _assemble(head, body, "x")
        env["x"] = res.ir.meta.inputs[0].type
        last = "x"
        for i in range(r.randint(1, self.max_stmts)):
            for _attempt in range(6):
                od = r.choice(self.ops)
                c = self.call(od, env)
                if c is None:
                    continue
                name = f"v{i}"
                cand = body + [f"  {name} = {c}"]
                res = check(source=_assemble(head, cand, name), filename=FILE, dims=BOUND, strict_dims=False)
                if not res.ok:
                    continue
                node = next((n for n in res.ir.nodes() if n.binding == name and n.scope == ""), None)
                if node is None or not node.outputs:
                    continue
                if node.params and r.random() < 0.3:     # an init clause, kept when it fits
                    keys = [p.name or "value" for p in node.params] + ["*"]
                    clause = ", ".join(f"{r.choice(keys)}: {r.choice(INIT_SAMPLES)}" for _ in range(r.randint(1, 2)))
                    with_init = body + [f"  {name} = {c} init {{ {clause} }}"]
                    if check(source=_assemble(head, with_init, name), filename=FILE, dims=BOUND,
                             strict_dims=False).ok:
                        cand = with_init
                if any(p.name == "weight" for p in node.params) and r.random() < 0.3:   # a sparsity clause
                    with_sp = cand[:-1] + [cand[-1] + f" sparsity {r.choice(SPARSITY_SAMPLES)}"]
                    if check(source=_assemble(head, with_sp, name), filename=FILE, dims=BOUND,
                             strict_dims=False).ok:
                        cand = with_sp
                body = cand
                if len(node.outputs) == 1:
                    env[name] = node.outputs[0]
                    last = name
                else:
                    for k, t in enumerate(node.outputs):
                        env[f"{name}[{k}]"] = t
                    last = f"{name}[0]"
                break
        if r.random() < 0.35 and body:
            return _as_block(head, body, last, r)
        return _assemble(head, body, last)


INIT_SAMPLES = ("zeros", "ones", "constant(0.5)", "normal(0, 0.02)", "uniform(-0.1, 0.1)", "truncated_normal(std=0.5)",
                "xavier_uniform()", "xavier_normal(gain=2)", 'kaiming_normal(nonlinearity="relu")',
                'kaiming_uniform(mode="fan_out")', "orthogonal()", "identity()", "normal(0, 1 / sqrt(fan_in))",
                "default")


SPARSITY_SAMPLES = ("random(0.5)", "erk(0.3)", "magnitude(0.25)", "nm(2, 4)", "nm(1, 2)", "block(size=2, density=0.5)",
                    "block(size=4, density=0.25)", "monarch(2)", "monarch(blocks=4)", "lowrank(1)", "lowrank(2)",
                    "frozen", "frozen(random(0.5))", "random(1)", "random(0)", "nm(3, 4)")


GROUPS = "group R4 = c4(S)\ngroup R8 = d4(S)\n"


def _groups(text: str) -> str:
    return GROUPS + text if "group=R" in text else text


def _assemble(head: list[str], body: list[str], out: str) -> str:
    return _groups("model M {\n" + "\n".join(head + body + [f"  output {out}"]) + "\n}\n")


def _as_block(head: list[str], body: list[str], out: str, r: random.Random) -> str:
    """The same statements as the body of a block, called from the model (once, or twice in a chain)."""
    block = "block Body {\n" + "\n".join(head + body + [f"  output {out}"]) + "\n}\n"
    call = r.choice(["Body(x)", "x |> Body", "x |> Body |> Body", "x |> if true { Body }",
                     "x |> if false { Body } else { Body |> Body }", "x |> (repeat 1 as i { Body })"])
    return _groups(block + "model M {\n" + head[0] + f"\n  y = {call}\n  output y\n}}\n")


# -- mutation of the examples ----------------------------------------------------------------------
TOKENS = ["(", ")", "[", "]", "{", "}", ",", "=", "|>", "+", "-", "*", "**", "//", "%", "@", "==", "<=", "\n", ";",
          "input", "output", "ensure", "if", "else", "then", "repeat", "as", "block", "model", "import", "true",
          "x", "B", "H", "0", "-1", "3M", "1e-3", "1e999", "99999999999999999999", '"s"', "params", "shape(x)",
          "relu", "linear", "conv2d", "rearrange", "tie=x", " acted by S", " invariant under S", "group S = perm(N)\n",
          "group R = c4(H)\n", "group G = perm(N) * o3(D)\n", " equivariant under G", "frame_average(", ", group=R",
          " sparsity nm(2, 4)", " structure monarch(2)", "axes=[H]", "#", "$", "\t", "é", "名", "...", "[..., D]",
          "training", "forward", "None", '"\\x"', "\x00", "\u2028", "\ufeff", "\r", "\x0c", "int(1e999)", "[]"]


def mutate(src: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["delete", "insert", "dup_line", "drop_line", "number", "swap_lines"])
        lines = src.splitlines(True)
        if kind == "delete" and src:
            i = rng.randrange(len(src))
            src = src[:i] + src[min(len(src), i + rng.randint(1, 12)):]
        elif kind == "insert":
            i = rng.randint(0, len(src))
            src = src[:i] + rng.choice(TOKENS) + src[i:]
        elif kind == "dup_line" and lines:
            i = rng.randrange(len(lines))
            src = "".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])
        elif kind == "drop_line" and lines:
            i = rng.randrange(len(lines))
            src = "".join(lines[:i] + lines[i + 1:])
        elif kind == "swap_lines" and len(lines) > 1:
            i = rng.randrange(len(lines) - 1)
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
            src = "".join(lines)
        elif kind == "number":
            nums = list(re.finditer(r"\b\d+\b", src))
            if nums:
                m = rng.choice(nums)
                new = str(rng.choice([0, 1, 2, 3, 7, 1000, 10 ** 9, 2 ** 41, 2 ** 70]))
                src = src[:m.start()] + new + src[m.end():]
    return src


# -- the oracle -------------------------------------------------------------------------------------
def problems(src: str, run: bool = True, filename: str = FILE, stats: dict | None = None) -> list[str]:
    """What is wrong with how nndsl handles `src` (empty when nothing). `stats["accepted"]` counts the
    specs that checked (and were therefore compiled, loaded and run)."""
    from .compiler import check
    from .diagnostics import render_all, to_json

    out: list[str] = []
    try:
        from .syntax.fastparse import parse_fast
        from .syntax.parser import parse_recovering

        fast, slow = parse_fast(src, filename, strict=True), parse_recovering(src, filename, fast=False)[0]
        if fast is not None and fast != slow:
            out.append("the fast parser and the LALR parser disagree" if slow is not None else
                       "the fast parser accepts text the LALR parser rejects")
    except Exception:  # noqa: BLE001
        return [f"parse raised:\n{traceback.format_exc()}"]
    try:
        res = check(source=src, filename=filename, dims=BOUND, strict_dims=False)
        if res.ok and run:
            rest = [d for d in res.ir.meta.free_dims if d not in BOUND]
            if rest:  # bind the other free dims small too, so that the model can run
                res = check(source=src, filename=filename, dims={**BOUND, **{d: 8 for d in rest}}, strict_dims=False)
    except Exception:  # noqa: BLE001 - the point of the oracle
        return [f"check raised:\n{traceback.format_exc()}"]
    try:
        render_all(res.diagnostics, res.sources)
        to_json(res.diagnostics)
    except Exception:  # noqa: BLE001
        out.append(f"rendering raised:\n{traceback.format_exc()}")
    for d in res.diagnostics:
        if d.code == "E9999":
            out.append(f"internal error: {d.message} {d.notes}")
        elif d.is_error and not _located(d, filename):
            out.append(f"{d.code} without a location in {filename}: {d.message}")
    if res.ok:
        from .passes.axes import verify_axes

        out += [f"axis identities: {m}" for m in verify_axes(res.ir)[:3]]
        try:                       # every spec that checks can be drawn as a circuit diagram
            from .backends.ncd import Options, layout
            from .backends.ncd_dot import to_dot

            for depth in (0, 2):
                to_dot(layout(res.ir, Options(depth=depth)))
        except Exception:  # noqa: BLE001
            out.append(f"circuit layout raised:\n{traceback.format_exc()}")
    if res.ok and stats is not None:
        stats["accepted"] = stats.get("accepted", 0) + 1
    if res.ok and run:
        out += _runs(res)
    return out


def _indices_from_data(ir) -> bool:
    """An embedding looks up indices computed (by arithmetic, not layout) from the model's integer inputs:
    whether they are in range depends on the data, which only the caller knows. A `take` whose indices
    have no bound the checker follows (from data, or through `-`) is likewise checked by PyTorch."""
    for n in ir.nodes():
        if n.op == "take":
            t = ir.in_types(n.id)[1]
            if t.vmax is None or not t.vmax.is_const or t.vmax.value >= 2 ** 62:
                return True
        if n.op != "embedding":
            continue
        (src, port), = ir.inputs_of(n.id)
        t = ir.node(src).outputs[port]
        stack, seen = [src], set()
        from .ops import get as get_op

        while t.vmax is None and stack:
            u = stack.pop()
            if u in seen:
                continue
            seen.add(u)
            node = ir.node(u)
            if node.op in ("input", "block_input"):
                continue
            od = get_op(node.op)
            if od is None or "layout" not in od.traits:
                return True
            stack += [v for v, _p in ir.inputs_of(u)]
    return False


def _activation_bytes(ir) -> int:
    """An upper bound on the bytes of every tensor one forward pass produces (concrete shapes)."""
    from .types import dtype_bytes

    total = 0
    for n in ir.nodes():
        for t in n.outputs:
            k = dtype_bytes(t.dtype)
            for d in t.shape:
                k *= d.value if d.is_const else 1
            total += k
    return total


def _located(d, filename: str) -> bool:
    spans = [d.span] + [cs.span for cs in d.call_sites]
    return any(s is not None and s.file == filename and s.line >= 1 for s in spans)


def _runs(res) -> list[str]:
    from .backends.torch_codegen import generate
    from .backends.torch_module import module_from_source
    from .passes.validate import model_bytes

    if model_bytes(res.ir)[0] > MAX_RUN_BYTES:
        return []  # `load` refuses such a model with a diagnostic (its memory budget); nothing to run
    if _activation_bytes(res.ir) > MAX_RUN_BYTES:
        return []  # a valid model whose forward pass on these sizes needs more memory than the oracle has

    try:
        src, cls = generate(res.ir)
    except Exception:  # noqa: BLE001
        return [f"checks but does not compile:\n{traceback.format_exc()}"]
    try:
        compile(src, "<generated>", "exec")
    except SyntaxError:
        return [f"emitted source is not valid Python:\n{traceback.format_exc()}\n{src}"]
    try:
        import torch

        mod = module_from_source(src, cls, res.ir.meta.model)
        model = mod.build(0).eval()
        if _indices_from_data(res.ir):
            return []  # which rows are looked up depends on the input data: no input is "random" here
        inputs = []
        for mi in res.ir.meta.inputs:
            shape = [d.value for d in mi.type.shape]
            dt = getattr(torch, mi.type.dtype)
            if mi.type.is_float:
                inputs.append(torch.randn(*shape, dtype=dt))
            elif mi.type.dtype == "bool":
                inputs.append(torch.rand(*shape) > 0.5)
            else:
                inputs.append(torch.zeros(*shape, dtype=dt))
        with torch.no_grad():
            try:
                outs = model(*inputs)
            except RuntimeError as e:
                if str(e) == "ZeroDivisionError":
                    return []  # integer `//` or `%` by a tensor that holds zeros here: the data's doing
                raise
        outs = outs if isinstance(outs, tuple) else (outs,)
        for o, mo in zip(outs, res.ir.meta.outputs):
            want = [d.value for d in res.ir.node(mo.node).outputs[mo.port].shape]
            if list(o.shape) != want:
                return [f"output `{mo.name}` has shape {list(o.shape)} at run time, the checker said {want}\n{src}"]
            want_dt = res.ir.node(mo.node).outputs[mo.port].dtype
            if str(o.dtype) != f"torch.{want_dt}":
                return [f"output `{mo.name}` is {o.dtype} at run time, the checker said {want_dt}\n{src}"]
    except Exception:  # noqa: BLE001
        return [f"checks but does not load or run:\n{traceback.format_exc()}\n{src}"]
    return []


# -- the long run -----------------------------------------------------------------------------------
def examples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "examples"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nndsl.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", type=float, default=60.0, help="seconds to run")
    ap.add_argument("--corpus", type=Path, default=Path("tests/fuzz_corpus"), help="where failing inputs go")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--mode", choices=("both", "structured", "mutate"), default="both")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    seeds = [p.read_text() for p in sorted(examples_dir().glob("*.nn"))]
    gen = SpecGen(rng)
    stats = {"structured": 0, "mutated": 0, "accepted": 0, "failures": 0}
    end = time.monotonic() + args.time
    while time.monotonic() < end:
        structured = args.mode == "structured" or (args.mode == "both" and rng.random() < 0.5)
        src = gen.generate() if structured else mutate(rng.choice(seeds), rng)
        stats["structured" if structured else "mutated"] += 1
        found = problems(src, stats=stats)
        if not found:
            continue
        stats["failures"] += 1
        args.corpus.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(src.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        (args.corpus / f"{name}.nn").write_text(src, encoding="utf-8", errors="surrogatepass")
        print(f"FAIL {name}.nn: {found[0].splitlines()[0]}", file=sys.stderr)
    print(" ".join(f"{k}={v}" for k, v in stats.items()))
    return 1 if stats["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
