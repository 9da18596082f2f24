"""`nndsl fmt`: the canonical layout keeps every comment, never changes meaning (the formatted file parses to
the same AST and checks to the same IR) and is a fixed point, over every example, the standard library and
500 mutated specs; the command rewrites in place, `--check` changes nothing, and a file that does not parse
is reported and left alone."""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nndsl
from nndsl.fuzz import mutate
from nndsl.syntax.fmt import FormatError, format_text
from nndsl.syntax.parser import parse_recovering, parse_text
from nndsl.syntax.unparse import unparse

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "examples").glob("*.nn")) + sorted((ROOT / "stdlib_blocks").glob("*.nn"))
_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')


def comments(text: str) -> list[str]:
    return [m.group(0).rstrip() for line in text.split("\n") for m in _COMMENT.finditer(line)
            if m.group(0).startswith("#")]


def _no_spans(x):
    if isinstance(x, dict):
        return {k: _no_spans(v) for k, v in x.items() if "span" not in k}
    if isinstance(x, list):
        return [_no_spans(v) for v in x]
    return x


def same_meaning(a: str, b: str, name: str) -> None:
    assert unparse(parse_text(a, name)) == unparse(parse_text(b, name))        # the same AST, spans aside
    assert comments(a) == comments(b)                                         # every comment, in order


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_file_formats_to_a_fixed_point_with_the_same_meaning(path):
    text = path.read_text()
    out = format_text(text, str(path))
    same_meaning(text, out, str(path))
    assert format_text(out, str(path)) == out
    assert all(len(line) <= 120 for line in out.split("\n"))
    if path.parent.name == "examples":                     # and the same IR, spans aside
        tmp = ROOT / "examples" / f".fmt-{path.name}"
        try:
            tmp.write_text(out)
            a, b = nndsl.check(str(path)), nndsl.check(str(tmp))
            assert a.ok == b.ok
            if a.ok:
                ja = _no_spans(json.loads(a.ir.to_json()))
                jb = _no_spans(json.loads(b.ir.to_json().replace(str(tmp), str(path))))
                assert ja == jb
        finally:
            tmp.unlink(missing_ok=True)


def test_five_hundred_mutated_specs():
    rng = random.Random(7)
    formatted = rejected = 0
    while formatted + rejected < 500:
        src = mutate(rng.choice(FILES).read_text(), rng)
        mod, diags = parse_recovering(src, "m.nn")
        if mod is None or diags:
            with pytest.raises(FormatError) as e:
                format_text(src, "m.nn")
            assert e.value.diagnostics
            rejected += 1
            continue
        out = format_text(src, "m.nn")
        same_meaning(src, out, "m.nn")
        assert format_text(out, "m.nn") == out, src
        formatted += 1
    assert formatted > 100 and rejected > 50


def test_the_layout():
    src = ("# a header\n\n\ngroup S = perm(N)   # the set\nimport  mlp\nmodel M( D :int=4 ){\n  input x:[B,N,D]"
           " acted by S # points\n\n\n\n  # a comment of its own\n  h=relu( linear(x,\n    D) )  # after\n"
           "  init {linear.weight: zeros, linear.bias: zeros}\n  if D > 2 { y = h } else {\n    y = x\n  }\n"
           "  output y   # out\n  # dangling\n}  # closed\n# the end\n")
    want = ("# a header\n\ngroup S = perm(N)  # the set\n\nimport mlp\n\nmodel M(D: int = 4) {\n"
            "  input x: [B, N, D] acted by S  # points\n\n  # a comment of its own\n"
            "  h = relu(linear(x, D))         # after\n  init {\n    linear.weight: zeros\n    linear.bias: zeros\n"
            "  }\n  if D > 2 {\n    y = h\n  } else {\n    y = x\n  }\n  output y  # out\n"
            "  # dangling\n}  # closed\n# the end\n")
    assert format_text(src) == want
    assert format_text(want) == want


def test_the_command(tmp_path):
    f = tmp_path / "m.nn"
    f.write_text("model M {\n  input x: [B,4]\n  output relu( x )\n}\n")
    bad = tmp_path / "bad.nn"
    bad.write_text("model M {\n  input x: [B, 4\n}\n")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "nndsl", "fmt", *map(str, args)], capture_output=True,
                              text=True, timeout=60)

    r = run(f, "--check")
    assert r.returncode == 1 and "would reformat" in r.stderr and "[B,4]" in f.read_text()
    r = run(f)
    assert r.returncode == 0 and f.read_text() == "model M {\n  input x: [B, 4]\n  output relu(x)\n}\n"
    assert run(f, "--check").returncode == 0
    before = bad.read_text()
    r = run(bad)
    assert r.returncode == 1 and "error[E0001]" in r.stderr and bad.read_text() == before
    r = subprocess.run([sys.executable, "-m", "nndsl", "fmt", "-"], input="model M {\ninput x: [B]\noutput x\n}\n",
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "model M {\n  input x: [B]\n  output x\n}\n"
