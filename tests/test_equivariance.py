"""The symmetry checker (issue 10): `group S = perm(N)`, `acted by`, `ensure ... invariant|equivariant
under S`. Every claim it proves passes the numerical test in float64; every claim it refutes fails it;
what it cannot decide it says so (W0801) and claims nothing."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nndsl
from nndsl.symmetry.verify import verify

ROOT = Path(__file__).resolve().parents[1]


def spec(body: str, claim: str = "y invariant under S") -> str:
    return ("group S = perm(N)\nmodel M(N: int = 6, D: int = 3, H: int = 8) {\n  input x: [B, N, D] acted by S\n"
            + body + f"\n  ensure {claim}\n}}\n")


CASES = {
    # name: (body, claim, expected code or None for proved)
    "deepsets": ("  h = relu(linear(x, H))\n  g = sum(h, axes=[1])\n  output y = linear(g, 1)", None, None),
    "per-point": ("  h = relu(linear(x, H))\n  output y = h", "y equivariant under S", None),
    "gram": ("  h = linear(x, H)\n  output y = matmul(transpose(h, 1, 2), h)", None, None),
    "attention": ("  h = linear(x, H)\n  a = attention(h, h, h)\n  output y = mean(a, axes=[1])", None, None),
    "attention-equivariant": ("  h = linear(x, H)\n  output y = attention(h, h, h)", "y equivariant under S", None),
    "norm-then-max": ("  h = layernorm(linear(x, H))\n  output y = max(h, axes=[1])", None, None),
    "softmax-over-set": ("  output y = softmax(linear(x, H), axis=1)", "y equivariant under S", None),
    "equivariant-layers": ("  h = relu(equivariant_linear(x, H, axis=1))\n  output y = equivariant_linear(h, 4, axis=1)",
                           "y equivariant under S", None),
    "equivariant-then-pool": ("  h = relu(equivariant_linear(x, H, axis=1))\n  output y = linear(max(h, axes=[1]), 2)",
                              None, None),
    "equivariant-wrong-axis": ("  output y = equivariant_linear(transpose(x, 1, 2), 4, axis=1)", "y equivariant under S",
                               "E0802"),
    "still-a-set": ("  output y = relu(linear(x, H))", None, "E0802"),
    "linear-over-points": ("  t = transpose(x, 1, 2)\n  h = linear(t, 4)\n  output y = sum(h, axes=[2])", None, "E0802"),
    "causal": ("  h = linear(x, H)\n  a = attention(h, h, h, causal=true)\n  output y = mean(a, axes=[1])", None,
               "E0802"),
    "first-point": ("  output y = select(x, 1, 0)", None, "E0802"),
    "positions-weighted": ("  p = param([N, D])\n  output y = sum(x * p, axes=[1])", None, "E0802"),
    "positional-offset": ("  p = param([N, D])\n  output y = sum(x + p, axes=[1])", None, "W0801"),
    "flatten": ("  output y = flatten(x, 1)", None, "W0801"),
    "affine-over-points": ("  h = layernorm(x, axis=1)\n  output y = sum(h * h, axes=[1])", None, "E0802"),
    "window": ("  t = transpose(x, 1, 2)\n  output y = sum(conv1d(t, 4, 3), axes=[2])", None, "E0802"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_checker_agrees_with_the_numbers(name):
    body, claim, code = CASES[name]
    r = nndsl.check(source=spec(body, claim or "y invariant under S"), B=3)
    codes = [d.code for d in r.diagnostics]
    assert codes == ([code] if code else []), (name, r.diagnostics)
    (v,) = verify(r.ir, samples=6)
    if code is None:
        assert v.error < 1e-9, (name, v.error)             # proved: holds to float64 precision
    elif code == "E0802":
        assert v.error > 1e-3, (name, v.error)             # refuted: fails, no false refutation here
    d = r.diagnostics[0] if r.diagnostics else None
    if code == "E0802" and name != "still-a-set":
        assert d.secondary and d.help                      # the culprit op, and what would keep the symmetry


def test_the_culprit_is_named_at_its_line():
    r = nndsl.check(source=spec(CASES["linear-over-points"][0]), B=3)
    (d,) = r.diagnostics
    assert "`linear` (`h`) has a weight along N" in d.message
    assert d.span.line == 7 and d.secondary[0].span.line == 5


def test_group_declarations_are_checked():
    bad = {
        "group S = rot90(H, W)\nmodel M {\n  input x: [B, N, D] acted by S\n  output y = x\n}\n": "E0801",
        "group S = perm(K)\nmodel M {\n  input x: [B, N, D] acted by S\n  output y = x\n}\n": "E0801",
        "group S = perm(N)\nmodel M {\n  input x: [B, N, D] acted by T\n  output y = x\n}\n": "E0801",
        "group S = perm(N)\nmodel M {\n  input x: [B, N, D]\n  output y = sum(x, axes=[N])\n"
        "  ensure y invariant under S\n}\n": "E0801",
        "group S = perm(N)\ngroup S = perm(N)\nmodel M {\n  input x: [B, N, D]\n  output y = x\n}\n": "E0105",
    }
    for src, code in bad.items():
        assert [d.code for d in nndsl.check(source=src).diagnostics] == [code], src
    # the words stay names elsewhere
    ok = ("model M {\n  input x: [B, 4]\n  group = linear(x, 4)\n  acted = relu(group)\n  by = acted\n"
          "  invariant = by\n  under = invariant\n  output y = under\n}\n")
    assert nndsl.check(source=ok).ok


def test_the_example_and_the_command_line():
    r = subprocess.run([sys.executable, "-m", "nndsl", "check", str(ROOT / "examples" / "deepsets.nn"),
                        "--verify-equivariance"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "logits invariant under S: max |f(g·x) - g·f(x)| = " in r.stdout


def test_a_failing_claim_fails_the_command(tmp_path):
    f = tmp_path / "bad.nn"
    f.write_text(spec(CASES["positional-offset"][0].replace("x + p", "x * p")))
    r = subprocess.run([sys.executable, "-m", "nndsl", "check", str(f), "--verify-equivariance"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "E0802" in r.stderr


def test_equivariant_linear_has_the_solvers_free_weights():
    """Per channel pair, the S_n-equivariant set -> set maps have dimension 2 (λ I + γ 11ᵀ / n): the
    layer's weight [out, 2C] holds exactly those, and nothing else."""
    from nndsl.symmetry import dimension, permutation, symmetric

    r = nndsl.check(source=spec("  output y = equivariant_linear(x, 5, axis=1, bias=false)",
                                "y equivariant under S"), B=2)
    (p,) = [p for n in r.ir.nodes() for p in n.params]
    P = permutation(symmetric(6))
    assert p.numel == dimension(P, P) * 3 * 5


EDGES = ("group S = perm(N)\nmodel E(N: int = 5, C: int = 3) {{\n  input a: [B, N, N, C] acted by S\n"
         "{body}\n  ensure y {claim} under S\n}}\n")


@pytest.mark.parametrize("body,claim,code", [
    ("  output y = transpose(relu(linear(a, 4)), 1, 2)", "equivariant", None),          # both node axes, swapped
    ("  output y = sum(a, axes=[1, 2])", "invariant", None),
    ("  d = mean(a, axes=[2])\n  output y = matmul(transpose(d, 1, 2), d)", "invariant", None),
    ("  output y = sum(a, axes=[2])", "equivariant", None),
    ("  output y = sum(a, axes=[2])", "invariant", "E0802"),
    ("  t = transpose(a, 2, 3)\n  output y = sum(linear(t, 2), axes=[1, 2])", "invariant", "E0802"),
])
def test_order_two_actions_permute_every_axis_of_the_dim(body, claim, code):
    r = nndsl.check(source=EDGES.format(body=body, claim=claim), B=2)
    assert [d.code for d in r.diagnostics] == ([code] if code else []), r.diagnostics
    assert len(r.ir.meta.actions) == 2
    (v,) = verify(r.ir, samples=6)
    assert (v.error < 1e-9) if code is None else (v.error > 1e-3), v.error


def test_the_edge_example():
    r = subprocess.run([sys.executable, "-m", "nndsl", "check", str(ROOT / "examples" / "edge_gnn.nn"),
                        "--verify-equivariance"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "logits invariant under S: max |f(g·x) - g·f(x)| = " in r.stdout


def test_the_order_two_layer_spans_the_solvers_fifteen_maps():
    """equivariant_linear2's 15 maps are linearly independent maps of N x N matrices (rank 15 = Bell(4),
    the dimension the solver finds for order-2 -> order-2), and a network of them is proved equivariant
    and verified."""
    import torch

    from nndsl.symmetry import dimension, permutation, symmetric

    n = 5
    m = nndsl.load(source="model T(N: int = 5) {\n  input a: [B, N, N, 1]\n  output y = equivariant_linear2(a, 1, "
                          "bias=false)\n}\n", seed=0).double()
    maps = []
    for k in range(15):
        with torch.no_grad():
            m.y.weight.zero_()
            m.y.weight[0, k] = 1.0
            basis = torch.eye(n * n, dtype=torch.float64).view(n * n, n, n, 1)
            maps.append(m(basis).reshape(n * n, n * n).flatten())
    P = permutation(symmetric(n))
    assert torch.linalg.matrix_rank(torch.stack(maps)).item() == 15 == dimension(P ** 2, P ** 2)
    r = nndsl.check(source=EDGES.format(body="  h = relu(equivariant_linear2(a, 8))\n  output y = "
                                        "equivariant_linear2(h, 2)", claim="equivariant"), B=2)
    assert r.ok and not r.diagnostics
    (v,) = verify(r.ir, samples=6)
    assert v.error < 1e-9


def test_verification_is_bounded_before_it_allocates(tmp_path):
    f = tmp_path / "big.nn"
    f.write_text(spec("  output y = sum(x, axes=[1])").replace("N: int = 6", "N: int = 100000000"))
    r = subprocess.run([sys.executable, "-m", "nndsl", "check", str(f), "--verify-equivariance"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "error[E0112]: verifying `M` would allocate" in r.stderr
    assert "Traceback" not in r.stderr
