"""Parser: round trip through the unparser, spans, numbers, and syntax errors in plain words."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT
from nndsl.diagnostics import Abort
from nndsl.syntax import ast as A
from nndsl.syntax import parse_text
from nndsl.syntax.parser import parse_number
from nndsl.syntax.unparse import unparse

SPECS = sorted(EXAMPLES.glob("*.nn")) + sorted((ROOT / "stdlib_blocks").glob("*.nn"))


def strip_spans(x):
    if isinstance(x, dict):
        return {k: strip_spans(v) for k, v in x.items() if not k.endswith(("span", "spans"))}
    if isinstance(x, list):
        return [strip_spans(v) for v in x]
    return x


def dump(m: A.Module):
    return strip_spans(A.to_dict(m))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_round_trip(path: Path):
    m = parse_text(path.read_text(), str(path))
    text = unparse(m)
    again = parse_text(text, "again.nn")
    assert dump(again) == dump(m) | {"file": "again.nn"}
    assert unparse(again) == text  # the unparser is a fixed point


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_ast_json_round_trip(path: Path):
    m = parse_text(path.read_text(), str(path))
    back = A.from_json(A.to_json(m))      # validated on the way back: every field's type, every node's kind
    assert back == m
    assert A.to_json(back) == A.to_json(m)
    # the same through pydantic's model API, on the module and on a node
    assert A.Module.model_validate_json(m.model_dump_json()) == m
    node = m.items[-1]
    assert type(node).model_validate(node.model_dump()) == node
    with pytest.raises(ValueError):
        A.Module.model_validate_json('{"file": "x.nn", "items": [{"kind": "nope"}]}')


SRC = '''block R(C: int, s: int = 1) {
  input x: [B, C, H, W]
  c1 = conv2d(x, C, kernel=3,
      padding=1) |> batchnorm2d
      |> relu
  output relu(c1 + x)
}
'''


def test_spans_point_at_the_source():
    m = parse_text(SRC, "r.nn")
    blk = m.items[0]
    assert (blk.name_span.line, blk.name_span.col, blk.name_span.end_col) == (1, 7, 8)
    inp, bind, out = blk.body
    assert (inp.span.line, inp.span.col, inp.span.end_line, inp.span.end_col) == (2, 3, 2, 24)
    assert (inp.name_span.col, inp.name_span.end_col) == (9, 10)
    # a statement continued over lines spans all of them
    assert (bind.span.line, bind.span.end_line, bind.span.end_col) == (3, 5, 14)
    call = bind.value.head
    assert (call.span.line, call.span.col, call.span.end_line, call.span.end_col) == (3, 8, 4, 17)
    add = out.items[0].value.args[0].value
    assert add.kind == "binop" and (add.span.col, add.span.end_col, add.op_span.col) == (15, 21, 18)
    for item, text in ((add.left, "c1"), (add.right, "x")):
        line = SRC.splitlines()[item.span.line - 1]
        assert line[item.span.col - 1:item.span.end_col - 1] == text


@pytest.mark.parametrize("text,value", [("3M", 3_000_000), ("1.5k", 1500), ("1e-3", 1e-3), ("42", 42),
                                        ("2.5", 2.5), ("1G", 10**9), ("0.5M", 500_000)])
def test_numbers(text, value):
    assert parse_number(text) == value
    m = parse_text(f"model M(a: float = {text}) {{\n  input x: [B, 1]\n  output x\n}}\n")
    assert m.items[0].params[0].default.value == value


def test_comments_semicolons_and_continuations():
    m = parse_text("# top\nmodel M { # trailing\n  input x: [B, 4]; h = relu(x)\n  output h  # done\n}\n")
    assert [s.kind for s in m.items[0].body] == ["input", "bind", "output"]


@pytest.mark.parametrize("src", [
    "model M { input x: [B 4] }", "model M { h = conv2d(x,, 3) }", "block { }", "model M { output }",
    "model M { x = (((1) }", "model M { x = [1, 2 }", "model M {\n  x = 1 +\n}", "import", "model M { x = 1 2 }",
])
def test_syntax_errors_speak_plainly(src):
    with pytest.raises(Abort) as ei:
        parse_text(src, "bad.nn")
    d = ei.value.diagnostic
    assert d.code in ("E0001", "E0002", "E0003")
    text = d.message + d.label + (d.help or "")
    assert "__ANON" not in text and "_NL" not in text and "$END" not in text
    assert d.span is not None and d.span.line >= 1 and d.span.col >= 1


def test_end_of_file_error_points_at_the_end():
    src = "model M {\n  input x: [B, 4]\n"
    with pytest.raises(Abort) as ei:
        parse_text(src, "eof.nn")
    assert ei.value.diagnostic.code == "E0002"
    assert ei.value.diagnostic.span.line == 3


def test_every_grammar_rule_has_an_ast_builder():
    from nndsl.syntax.parser import _ToAST, _lark

    rules = {r.alias or r.origin.name for r in _lark().rules}
    rules = {str(getattr(r, "name", r)) for r in rules}
    inlined = {n for n in rules if n.startswith("_") or n in {"expr", "pipe", "stage", "postfix", "unary", "power",
                                                              "term", "arith", "comparison", "atom", "arg"}}
    missing = [r for r in rules - inlined if not hasattr(_ToAST, r)]
    assert not missing, missing


def test_several_independent_syntax_errors_in_one_run():
    from nndsl.syntax.parser import parse_recovering

    src = "model M {\n  a = f(x 1)\n  b = relu(a) relu\n  c = a +* b\n  output c\n}\n"
    mod, diags = parse_recovering(src, "m.nn")
    assert mod is None
    assert [(d.code, d.span.line) for d in diags] == [("E0001", 2), ("E0001", 3), ("E0001", 4)]
    # inside a bracket opened on an earlier line, recovery would guess: it stops at the first error
    mod, diags = parse_recovering("model M {\n  a = f(1,\n  2 3)\n  b = 1 2\n}\n", "m.nn")
    assert len(diags) == 1


def test_statement_keywords_are_names_where_they_cannot_be_keywords():
    """`block`, `output`, `input`, `model`, `import`, `ensure` begin statements; anywhere else, or followed
    by `=`, they are names (EfficientNet's `block`, BERT's `attention.output`)."""
    import nndsl

    src = ("block Attn(D: int) {\n  input x: [B, T, D]\n  self = linear(x, D)\n  output = linear(self, D)\n"
           "  output output\n}\nmodel M {\n  input x: [B, T, 8]\n  block = Attn(x, 8)\n  model, input = chunk(block, 2)\n"
           "  ensure = relu(model) + input\n  output y = linear(ensure, 4)\n}\n")
    m = parse_text(src, "k.nn")
    assert unparse(parse_text(unparse(m), "k.nn")) == unparse(m)
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    assert sorted(nndsl.load(source=src).state_dict()) == ["block.output.bias", "block.output.weight",
                                                           "block.self.bias", "block.self.weight", "y.bias", "y.weight"]
    # at the start of a statement, without `=`, they are still keywords
    bad = nndsl.check(source="model M {\n  input x: [B]\n  output\n}\n")
    assert bad.errors[0].code == "E0001"


def _both(P, text: str, file: str):
    """What the tighter loop and Lark's own parser give for `text`: the module, or the error (its type,
    token and position), each from a fresh parser state."""
    out = []
    for run in (lambda: P._parse(text), lambda: P._lark().parse(text)):
        P._TRANSFORMER.file, P._TRANSFORMER.errors = file, []
        P._LEX.reset()
        try:
            out.append(run())
        except Exception as e:  # noqa: BLE001 - a syntax error: both must report the same one
            tok = getattr(e, "token", None)
            out.append((type(e).__name__, getattr(tok, "type", None), getattr(tok, "start_pos", None),
                        getattr(e, "pos_in_stream", None)))
    return out


def _sources():
    root = Path(__file__).resolve().parents[1]
    for d in ("examples", "stdlib_blocks", "tests/ui", "tests/fuzz_corpus"):
        yield from sorted((root / d).glob("*.nn"))


def test_the_fast_loop_parses_exactly_as_lark_or_not_at_all():
    """parse_recovering runs a tighter loop over Lark's LALR table; on every spec we have it must give the
    very AST (spans included) that Lark's own parser gives, or the very same error."""
    from nndsl.syntax import parser as P

    n = 0
    for path in _sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        fast, slow = _both(P, text, str(path))
        assert fast == slow, path
        n += isinstance(fast, P.A.Module)
    assert n > 30


def test_the_fast_loop_agrees_on_generated_and_mutated_specs():
    import random

    from nndsl import fuzz
    from nndsl.syntax import parser as P

    rng = random.Random(5)
    agreed = stepped_aside = 0
    for i in range(150):
        text = fuzz.SpecGen(random.Random(i)).generate()
        if i % 2:
            text = fuzz.mutate(text, rng)
        fast, slow = _both(P, text, "g.nn")
        assert fast == slow, text
        if isinstance(fast, P.A.Module):
            agreed += 1
        else:
            stepped_aside += 1
    assert agreed > 50 and stepped_aside > 5


def test_the_shipped_tables_are_made_from_the_grammar_and_parsing_needs_no_lark():
    """grammar/nndsl.tables.json is what Lark makes of grammar/nndsl.lark now (run scripts/gen_tables.py
    after editing the grammar); with it, parsing imports neither Lark nor the regex module Lark pulls in."""
    import json
    import subprocess
    import sys

    from nndsl.syntax import tables
    from nndsl.syntax.parser import _lark

    shipped = json.loads(tables.tables_path().read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(tables.from_lark(_lark(), tables.grammar_digest()))), \
        "grammar/nndsl.tables.json is stale: run scripts/gen_tables.py"
    code = ("import sys, nndsl; r = nndsl.check('examples/gpt2_small.nn'); assert r.ok; "
            "print(sorted(m for m in ('lark', 'regex') if m in sys.modules))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_an_edited_grammar_gets_fresh_tables(monkeypatch, tmp_path):
    """Tables made for another grammar are not used: the parser makes them again from Lark."""
    import json

    from nndsl.syntax import tables

    stale = json.loads(tables.tables_path().read_text(encoding="utf-8"))
    stale["grammar"] = "0" * 64
    stale["states"] = []
    f = tmp_path / "nndsl.tables.json"
    f.write_text(json.dumps(stale))
    monkeypatch.setattr(tables, "tables_path", lambda: f)
    data = tables.load()
    assert data["grammar"] == tables.grammar_digest() and data["states"]
