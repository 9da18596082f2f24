"""Property and fuzz tests: no input, random or mutated, may produce an internal error or a traceback."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLES
from nndsl import ops as O
from nndsl.compiler import check
from nndsl.diagnostics import render_all, to_json
from nndsl.dims import Dim, parse_dim
from nndsl.fuzz import TOKENS, SpecGen, mutate, problems

import os

SETTINGS = settings(max_examples=int(os.environ.get("NNDSL_FUZZ_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [(EXAMPLES / f).read_text() for f in ("mlp.nn", "resnet18.nn", "unet.nn", "vit_b16.nn")]


def assert_clean(src: str) -> None:
    res = check(source=src, filename="fuzz.nn")
    codes = [d.code for d in res.diagnostics]
    assert "E9999" not in codes, render_all(res.diagnostics, res.sources)
    # rendering never raises either
    render_all(res.diagnostics, res.sources)
    to_json(res.diagnostics)


@SETTINGS
@given(st.text(max_size=300))
def test_random_text(src):
    assert_clean(src)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_random_token_soup(toks):
    assert_clean("model M {\n  input x: [B, 4]\n  " + " ".join(toks) + "\n}\n")


@st.composite
def mutated(draw):
    src = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "dup_line", "drop_line", "number"]))
        lines = src.splitlines(True)
        if kind == "delete" and src:
            i = draw(st.integers(0, len(src) - 1))
            j = draw(st.integers(i, min(len(src), i + 12)))
            src = src[:i] + src[j:]
        elif kind == "insert":
            i = draw(st.integers(0, len(src)))
            src = src[:i] + draw(st.sampled_from(TOKENS)) + src[i:]
        elif kind == "dup_line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            src = "".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])
        elif kind == "drop_line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            src = "".join(lines[:i] + lines[i + 1:])
        elif kind == "number":
            import re
            nums = list(re.finditer(r"\b\d+\b", src))
            if nums:
                m = nums[draw(st.integers(0, len(nums) - 1))]
                new = str(draw(st.sampled_from([0, 1, 2, 3, 7, 1000, 10**9, 2**41])))
                src = src[:m.start()] + new + src[m.end():]
    return src


@SETTINGS
@given(mutated())
def test_mutated_examples(src):
    assert_clean(src)


ARGS = st.sampled_from(["x", "y", "3", "0", "-2", "2.5", "true", '"same"', '"b c -> c b"', "[1, 2]", "[H]",
                        "kernel=3", "stride=2", "axis=1", "axes=[1]", "p=0.5", "heads=2", "causal=true",
                        "n=2", "shape=[B, -1]", "sizes=[1, 1]", "[B, 4]"])


@SETTINGS
@given(st.sampled_from(sorted(O.all_names())), st.lists(ARGS, max_size=5),
       st.sampled_from(["[B, 4]", "[B, 3, 8, 8]", "[2, 4, 6]", "[B, T, 8]", "[B]", "[B, 4] int64"]))
def test_random_op_calls(op, args, shape):
    src = f"model M {{\n  input x: {shape}\n  input y: {shape}\n  output {op}({', '.join(args)})\n}}\n"
    assert_clean(src)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.one_of(st.integers(-50, 50).map(Dim.const), st.sampled_from(["B", "H", "W"]).map(Dim.sym)),
                    lambda inner: st.one_of(
                        st.tuples(inner, inner).map(lambda t: t[0] + t[1]),
                        st.tuples(inner, inner).map(lambda t: t[0] - t[1]),
                        st.tuples(inner, inner).map(lambda t: t[0] * t[1]),
                        st.tuples(inner, st.integers(1, 9)).map(lambda t: t[0].floordiv(t[1])),
                        st.tuples(inner, st.integers(1, 9)).map(lambda t: t[0].mod(t[1]))), max_leaves=8),
       st.integers(1, 40), st.integers(1, 40), st.integers(1, 40))
def test_dims_agree_with_integer_arithmetic(d, b, h, w):
    env = {"B": b, "H": h, "W": w}
    assert parse_dim(str(d)) == d  # printing and reading back is exact
    concrete = d.subs({k: Dim.const(v) for k, v in env.items()})
    assert concrete.is_const
    assert concrete.value == _eval(str(d), env)


def _eval(text: str, env: dict) -> int:
    return eval(text, {"__builtins__": {}}, dict(env))  # // and % are Python's floor semantics too


# -- the structured generator and the full oracle (nndsl.fuzz): what checks must compile, load and run ----

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
ORACLE = settings(max_examples=int(os.environ.get("NNDSL_FUZZ_EXAMPLES", "150")) // 2, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])


@ORACLE
@given(st.integers(0, 2 ** 32 - 1))
def test_generated_specs_that_check_compile_load_and_run(seed):
    src = SpecGen(random.Random(seed)).generate()
    assert problems(src) == [], src


@ORACLE
@given(st.integers(0, 2 ** 32 - 1))
def test_mutated_examples_under_the_full_oracle(seed):
    rng = random.Random(seed)
    src = mutate(rng.choice(SEEDS), rng)
    assert problems(src) == [], src


def test_the_generator_covers_every_op():
    """Over a fixed set of seeds, every op of the registry appears in some accepted spec."""
    import re

    from nndsl.compiler import check
    from nndsl.ops import registry as R

    R._load()
    seen: set[str] = set()
    for seed in range(4000):
        src = SpecGen(random.Random(seed), max_stmts=4).generate()
        if check(source=src, filename="fuzz.nn", dims={"B": 2, "T": 3, "N": 4}, strict_dims=False).ok:
            seen |= set(re.findall(r"= (\w+)\(", src))
        if seen >= set(R.OPS):
            break
    assert set(R.OPS) - seen == set()


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.nn")), ids=lambda p: p.name)
def test_fuzz_corpus_replays_clean(path):
    """Every input that once failed (found by the fuzzers) is handled correctly now."""
    assert problems(path.read_text()) == []
