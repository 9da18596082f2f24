"""The fast parser (nndsl/syntax/fastparse.py) against the LALR parser it stands in for: wherever it returns an
AST, the LALR parser builds the same one (spans included); it gives up wherever the LALR parser reports an
error; on the shipped specs it never gives up."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nndsl.fuzz import TOKENS, SpecGen, mutate
from nndsl.syntax.fastparse import _GiveUp, parse_fast, tokens
from nndsl.syntax.parser import _lex, _postlex, _tables, parse_recovering

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*ROOT.glob("examples/**/*.nn"), *ROOT.glob("stdlib_blocks/**/*.nn"), *ROOT.glob("tests/**/*.nn")])
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def lalr(text: str):
    return parse_recovering(text, "t.nn", fast=False)[0]


def agree(text: str) -> bool:
    """The two parsers agree on `text`; True when the fast one built the AST itself."""
    fast, slow = parse_fast(text, "t.nn", strict=True), lalr(text)
    if fast is None:
        return False
    assert slow is not None, f"the fast parser accepts what the LALR parser rejects:\n{text}"
    assert fast == slow, f"different ASTs for:\n{text}"
    return True


def lalr_tokens(text: str) -> list[tuple]:
    """What the LALR driver receives: (type, value, line, column), newlines as a type only."""
    return [(t.type, t.value if t.type != "_NL" else "", t.line, t.column)
            for t in _postlex(_lex(text, 0, 1, 0, _tables()[3]))]


def fast_tokens(text: str) -> list[tuple] | None:
    try:
        T, V, L, C = tokens(text)
    except _GiveUp:
        return None
    return [(t, v if t != "_NL" else "", ln, c) for t, v, ln, c in zip(T[:-1], V, L, C)]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_specs_take_the_fast_path(path):
    text = path.read_text(encoding="utf-8", errors="replace")
    if lalr(text) is None:                 # a spec of syntax errors, for the diagnostics tests
        assert parse_fast(text, "t.nn") is None
        return
    assert agree(text), "the fast parser gave up on a well-formed shipped spec"


def test_the_shipped_specs_are_many():
    assert len(SHIPPED) > 150


TRICKY = [
    # soft keywords as names, and as keywords where they start a statement
    "model M { input x: [B, D]\n  output = linear(x, D)\n  block, model = chunk(output, 2)\n"
    "  input2 = x.input\n  output y = block + model }",
    "block A(D: int = 4,) { input x: [B, D] float32 acted by S, T\n output x }",
    "model M { input x: [N, D] acted by S\n ensure x invariant under S\n ensure x equivariant under S\n output x }",
    # clauses after a binding and as statements; keys with `*`
    "model M { input x: [B, D]\n init { linear.weight: normal(0, 1), *.bias: zeros()\n weight: ones() }\n"
    " sparsity { linear.*: erk(0.1), }\n structure { conv2d.weight: nm(2, 4) }\n"
    " y = linear(x, D) init { weight: normal(0, 0.02) } sparsity monarch(4)\n"
    " z = linear(y, D) structure nm(2, 4)\n output z init {} }",
    "model M { parametrization mup(base_width=128)\n input x: [B, D]\n output x }",
    # expressions: precedence, associativity, unary minus, power, not, comparisons, flattening
    "model M(a: int = 2) { input x: [B, D]\n ensure -a ** 2 < 0 and not a == 3 or a ** -a ** 2 >= 1 or (a or a) or a\n"
    " ensure a * -a + a // 2 % 3 - a @ a != a and (a and a) and not not true\n"
    " y = x * 2 ** -0.5 + -x\n output y[0] }",
    # conditional expressions and stages, repeat stages, chains in parentheses, new lines in chains
    "model M(n: int = 2) { input x: [B, D]\n y = if n > 1 then x else (if n then x else -x)\n"
    " z = y\n   |> if n != 1 { linear(D) |> relu } else { relu }\n"
    "   |> repeat n as i \"layer{i}\" { linear(D) |> gelu }\n"
    " w = (repeat 2 { relu }) |> (if n == 2 { relu } |> relu)\n v = (if n then z else w)\n"
    " if n > 1 { u = z } else if n { u = w } else {\n  u = v\n }\n output u }",
    # imports, acts, groups, several items, `;` separators, comments, \r\n, trailing commas
    'import "blocks.nn" as b\nimport nn.attention\nimport std as s # a comment\r\n'
    "act swish(x, beta: float = 1.0,) = x * sigmoid(beta * x)\ngroup S = perm(N); group T = c4(H)\n"
    "model M { input x: [B, D,]; output f(x, [1, 2,], k=3,) }\n",
    # literals
    'model M { input x: [B, D]\n y = f(x, "a\\n\\x41\\u00e9\\N{GREEK SMALL LETTER ALPHA}", 1.5k, 3M, .5, 1e-3, 2B)\n'
    " output y.a.b(1)[2] }",
    "", "\n\n", "# only a comment", "model M {}", "model M {\n}\n",
]

REJECTED = [
    "model M { input x: [B, D]\n output x < 1 < 2 }",        # comparisons do not chain
    "model M { y = 1 == not 2 }", "model M { y = 1 + not 2 }", "model M { y = f(,) }",
    "model M { y = 99999999999999999999 }",                     # beyond 2**62: an error from the literal
    'model M { y = "\\q" }', "model M { y = $ }", 'model M { y = "open }',
    "model M { init { linear.weight/2: zeros() } }",            # a key takes `*` only
    "model M { y = (" + "(" * 120 + "1" + ")" * 121 + " }",     # nested past the limit
    "model M { y = f(x)\n z }", "model M { if x { y = 1 }\n else }", "model M { repeat = 1 }",
    "model M { input: [B] }", "model M { x = repeat 2 { relu } }", "model M { y = x |> a + b }",
    "model M { y = if a { x } }", "block", "model M { input x: [B] acted S }",
    "model M { y = x |> repeat 2 { relu |> } }", "model M { y = x |> repeat 2 { } }", "model M { y = (x,) }",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_forms_agree(text):
    assert agree(text)


@pytest.mark.parametrize("text", REJECTED)
def test_rejected_forms_fall_back(text):
    assert parse_fast(text, "t.nn") is None
    assert lalr(text) is None
    mod, diags = parse_recovering(text, "t.nn")
    assert mod is None and diags


def test_deep_nesting_falls_back_without_an_error():
    text = "model M { y = " + "-" * 3000 + "1 }"
    assert parse_fast(text, "t.nn") is None or agree(text)


@pytest.mark.parametrize("path", SHIPPED[::7], ids=lambda p: p.name)
def test_tokens_are_the_lalr_drivers(path):
    text = path.read_text(encoding="utf-8", errors="replace")
    got = fast_tokens(text)
    if got is not None:
        assert got == lalr_tokens(text)


def _mutants(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in SHIPPED[::3]]
    return [mutate(rng.choice(texts), rng) for _ in range(n)]


def test_mutated_specs_agree_or_fall_back():
    took = 0
    for text in _mutants(1, 400):
        took += agree(text)
        got = fast_tokens(text)
        if got is not None:
            try:
                ref = lalr_tokens(text)
            except Exception:  # noqa: BLE001 - the LALR lexer raises where the fast one gave up
                ref = None
            assert got == ref
    assert took > 100                     # most mutants still parse


@SETTINGS
@given(st.integers(0, 2 ** 32))
def test_generated_specs_agree(seed):
    text = SpecGen(random.Random(seed)).generate()
    assert agree(text)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup_agrees_or_falls_back(toks):
    text = " ".join(toks)
    agree("model M { input x: [B, D]\n y = " + text + "\n output y }")
    agree(text)


_LEAVES = st.sampled_from(["x", "B", "D", "1", "2.5", "3k", ".5", "1e-3", '"s"', "true", "false", "[]", "[1, x]",
                           "input", "by", "init", "sparsity", "shape(x)"])
_BINARY = ["+", "-", "*", "/", "//", "%", "@", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or", "|>"]
_GAPS = st.sampled_from([" ", " ", " ", "  ", "\n", "\t", " # c\n"])


def _compose(inner):
    """Expressions of every form, printed with optional parentheses and blanks or new lines between
    tokens (where a new line does not end the statement the post-lexer drops it; elsewhere it is an
    error both parsers must agree on)."""
    return st.one_of(
        st.tuples(inner, st.sampled_from(_BINARY), inner, _GAPS).map(lambda t: f"{t[0]}{t[3]}{t[1]} {t[2]}"),
        st.tuples(st.sampled_from(["-", "not ", "- ", "not not "]), inner).map("".join),
        inner.map(lambda e: f"({e})"),
        st.tuples(inner, st.lists(inner, max_size=3), st.booleans()).map(
            lambda t: f"{t[0]}({', '.join(t[1])}{', ' if t[2] and t[1] else ''})"),
        st.tuples(inner, st.sampled_from(["a", "weight", "input"])).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, inner, inner).map(lambda t: f"if {t[0]} then {t[1]} else {t[2]}"),
        st.tuples(inner, inner).map(lambda t: f"f(k={t[0]}, {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]} |> repeat 2 as i {{ relu |> {t[1]} }}"),
        st.tuples(inner, inner).map(lambda t: f"(if {t[0]} {{ relu }} else {{ gelu }} |> {t[1]})"),
    )


@SETTINGS
@given(st.recursive(_LEAVES, _compose, max_leaves=12), st.sampled_from(["y = ", "output ", "ensure ", "y, z = "]))
def test_expressions_agree_or_fall_back(e, head):
    agree("model M { input x: [B, D]\n " + head + e + "\n output x }")
