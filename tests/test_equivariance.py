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


# -- groups beyond permutations: grids, rolls, coordinates, products, frame averaging --------------------
def grid_spec(body: str, claim: str, group: str = "c4(S)", facts: str = "  ensure S % 2 == 0\n") -> str:
    return (f"group R = {group}\ngroup C = c4(S)\nmodel M(C0: int = 2) {{\n  input x: [B, C0, S, S] acted by R\n"
            + facts + body + f"\n  ensure {claim}\n}}\n")


GRID = {
    # name: (body, claim, group, expected code or None for proved)
    "gconv-pool": ("  l = relu(gconv2d(x, 4, kernel=3, group=R, padding=1))\n  g = gconv2d(l, 4, kernel=3, group=R, "
                   "padding=1)\n  output y = mean(group_pool(g), axes=[2, 3])", "y invariant under R", "c4(S)", None),
    "gconv-equivariant": ("  l = relu(gconv2d(x, 4, kernel=3, group=R, padding=1))\n  output y = gconv2d(l, 3, "
                          "kernel=3, group=R, padding=1)", "y equivariant under R", "c4(S)", None),
    "d4-gconv": ("  l = relu(gconv2d(x, 4, kernel=3, group=R, padding=1))\n  output y = max(group_pool(l, mode=\"mean\"), "
                 "axes=[2, 3])", "y invariant under R", "d4(S)", None),
    "one-by-one": ("  h = relu(conv2d(x, 4, kernel=1))\n  output y = mean(maxpool2d(h, kernel=2), axes=[2, 3])",
                   "y invariant under R", "c4(S)", None),
    "free-kernel": ("  h = relu(conv2d(x, 4, kernel=3, padding=1))\n  output y = mean(h, axes=[2, 3])",
                    "y invariant under R", "c4(S)", "E0802"),
    "rows-only": ("  h = relu(conv2d(x, 4, kernel=1))\n  output y = mean(h, axes=[3])", "y equivariant under R",
                  "c4(S)", "E0802"),
    "c4-filters-under-d4": ("  l = relu(gconv2d(x, 4, kernel=3, group=C, padding=1))\n  output y = mean(group_pool(l), "
                            "axes=[2, 3])", "y invariant under R", "d4(S)", "E0802"),
    "flatten-grid": ("  output y = flatten(x, 1)", "y invariant under R", "c4(S)", "W0801"),
}


@pytest.mark.parametrize("name", list(GRID))
def test_grid_claims_agree_with_the_numbers(name):
    body, claim, group, code = GRID[name]
    r = nndsl.check(source=grid_spec(body, claim, group), B=2)
    codes = [d.code for d in r.diagnostics]
    assert codes == ([code] if code else []), (name, r.diagnostics)
    (v,) = verify(r.ir, samples=8, sizes={"S": 6})
    if code is None:
        assert v.error < 1e-9, (name, v.error)
    elif code == "E0802":
        assert v.error > 1e-3, (name, v.error)
        assert r.diagnostics[0].help


def test_a_strided_pool_needs_the_fact_that_makes_it_symmetric():
    body = "  h = relu(conv2d(x, 4, kernel=1))\n  output y = mean(maxpool2d(h, kernel=2), axes=[2, 3])"
    r = nndsl.check(source=grid_spec(body, "y invariant under R", facts=""), B=2)
    (d,) = r.diagnostics
    assert d.code == "W0801" and "multiple of the stride 2" in d.message
    assert verify(r.ir, sizes={"S": 5})[0].error > 1e-3       # off-centre windows: the numbers fail too
    assert verify(r.ir, sizes={"S": 6})[0].error < 1e-9


def test_gconv2d_has_the_solvers_number_of_free_weights():
    """Free weights per channel pair of a 3x3 group convolution: as many as the equivariant maps the solver
    finds (lifting C4: 9, C4 regular: 36, D4 regular: 72)."""
    from nndsl.passes.ensures import param_count
    from nndsl.symmetry import basis, gconv_rep

    for group, fiber, rank in (("c4", "lifting", 4), ("c4", "regular", 5), ("d4", "regular", 5), ("d4", "lifting", 4)):
        order = 4 if group == "c4" else 8
        shape = "[B, 1, S, S]" if rank == 4 else f"[B, 1, {order}, S, S]"
        src = (f"group R = {group}(S)\nmodel M {{\n  input x: {shape}\n"
               f"  output y = gconv2d(x, 1, kernel=3, group=R, padding=1, bias=false)\n}}\n")
        r = nndsl.check(source=src)
        assert r.ok, r.diagnostics
        rin, rout = gconv_rep(group.upper(), 3, fiber)
        assert param_count(r.ir) == basis(rout, rin).shape[0], (group, fiber, param_count(r.ir))


def test_the_compiled_c4_cnn_runs_without_nndsl(tmp_path):
    src = nndsl.compile_source(str(ROOT / "examples" / "c4_cnn.nn"))
    path = tmp_path / "c4.py"
    path.write_text(src)
    code = ("import sys, builtins\nreal = builtins.__import__\n"
            "def imp(name, *a, **k):\n    if name.split('.')[0] == 'nndsl': raise ImportError(name)\n"
            "    return real(name, *a, **k)\nbuiltins.__import__ = imp\n"
            f"sys.path.insert(0, {str(tmp_path)!r})\nimport torch, c4\nm = c4.build(0).eval()\n"
            "x = torch.randn(2, 1, 8, 8)\ny = m(x)\ny2 = m(torch.rot90(x, 1, dims=(2, 3)))\n"
            "assert y.shape == (2, 10) and (y - y2).abs().max() < 1e-4, (y - y2).abs().max()\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


CYCLIC = {
    "roll": ("  output y = roll(linear(x, H), shifts=2, axes=[1])", "y equivariant under T", "cyclic(N)", None),
    "circular-conv": ("  t = transpose(x, 1, 2)\n  c = conv1d(t, 4, kernel=3, padding=1, padding_mode=\"circular\")\n"
                      "  output y = transpose(relu(c), 1, 2)", "y equivariant under T", "cyclic(N)", None),
    "zero-padded-conv": ("  t = transpose(x, 1, 2)\n  c = conv1d(t, 4, kernel=3, padding=1)\n"
                         "  output y = transpose(relu(c), 1, 2)", "y equivariant under T", "cyclic(N)", "E0802"),
    "roll-under-dihedral": ("  output y = roll(linear(x, H), shifts=2, axes=[1])", "y equivariant under T",
                            "dihedral(N)", "E0802"),
    "dihedral-sum": ("  output y = sum(relu(linear(x, H)), axes=[1])", "y invariant under T", "dihedral(N)", None),
}


@pytest.mark.parametrize("name", list(CYCLIC))
def test_rolls_and_reflections_agree_with_the_numbers(name):
    body, claim, group, code = CYCLIC[name]
    src = (f"group T = {group}\nmodel M(D: int = 3, H: int = 8) {{\n  input x: [B, N, D] acted by T\n{body}\n"
           f"  ensure {claim}\n}}\n")
    r = nndsl.check(source=src, B=2)
    assert [d.code for d in r.diagnostics] == ([code] if code else []), (name, r.diagnostics)
    (v,) = verify(r.ir, samples=8, sizes={"N": 7})
    assert (v.error < 1e-9) if code is None else (v.error > 1e-3), (name, v.error)


ROTATIONS = {
    "gram": ("  output y = matmul(x, transpose(x, 1, 2))", "y invariant under O", "o3(D)", None),
    "mix-points": ("  t = transpose(x, 1, 2)\n  output y = transpose(linear(t, 4, bias=false), 1, 2)",
                   "y equivariant under O", "o3(D)", None),
    "scaled-by-invariant": ("  n = sum(x * x, axes=[2], keepdim=true)\n  output y = x * sigmoid(n)",
                            "y equivariant under O", "o3(D)", "W0801"),
    "relu": ("  output y = relu(x)", "y equivariant under O", "o3(D)", "E0802"),
    "mlp": ("  output y = sum(linear(relu(linear(x, 8)), 1), axes=[1])", "y invariant under O", "so3(D)", "E0802"),
    "coordinate-sum": ("  output y = sum(x, axes=[2])", "y invariant under O", "o3(D)", "E0802"),
    "translations": ("  output y = matmul(x, transpose(x, 1, 2))", "y invariant under O", "e3(D)", "W0801"),
}


@pytest.mark.parametrize("name", list(ROTATIONS))
def test_rotations_of_coordinates_agree_with_the_numbers(name):
    body, claim, group, code = ROTATIONS[name]
    src = (f"group O = {group}\nmodel M(D: int = 3) {{\n  input x: [B, N, D] acted by O\n{body}\n"
           f"  ensure {claim}\n}}\n")
    r = nndsl.check(source=src, B=2, N=5)
    assert [d.code for d in r.diagnostics] == ([code] if code else []), (name, r.diagnostics)
    (v,) = verify(r.ir, samples=8)
    if code is None:
        assert v.error < 1e-9, (name, v.error)
    elif code == "E0802":
        assert v.error > 1e-3, (name, v.error)


def test_a_product_is_refuted_by_the_factor_it_breaks():
    src = ("group G = perm(N) * o3(D)\nmodel M(D: int = 3) {\n  input x: [B, N, D] acted by G\n"
           "  output y = matmul(x, transpose(x, 1, 2))\n  ensure y invariant under G\n}\n")
    r = nndsl.check(source=src, B=2)
    (d,) = r.diagnostics
    assert d.code == "E0802" and "its factor perm(N)" in d.message           # the Gram matrix is [N, N]
    assert verify(r.ir)[0].error > 1e-3


FRAMES = {
    # a nonlinear block made invariant by averaging over a finite group or PCA frames
    "c4-cnn": ("group R = c4(S)", "[B, 1, S, S]", "block Net {\n  input x: [B, 1, S, S]\n  h = relu(conv2d(x, 4, "
               "kernel=3, padding=1))\n  output y = linear(mean(h, axes=[2, 3]), 3)\n}\n", "Net(x)", "", None),
    "d4-cnn": ("group R = d4(S)", "[B, 1, S, S]", "block Net {\n  input x: [B, 1, S, S]\n  h = relu(conv2d(x, 4, "
               "kernel=3, padding=1))\n  output y = linear(mean(h, axes=[2, 3]), 3)\n}\n", "Net(x)", "", None),
    "cyclic": ("group R = cyclic(N)", "[B, N, 3]", "block Net {\n  input x: [B, N, 3]\n  h = relu(linear(x, 8))\n"
               "  output y = linear(flatten(h, 1), 2)\n}\n", "Net(x)", "", None),
    "so3-equivariant": ("group R = so3(D)", "[B, N, D]", "block Net(D: int) {\n  input x: [B, N, D]\n"
                        "  output y = linear(relu(linear(x, 16)), D)\n}\n", "Net(x, D)", ", equivariant=true", None),
    "e3": ("group R = e3(D)", "[B, N, D]", "block Net(D: int) {\n  input x: [B, N, D]\n"
           "  output y = linear(relu(linear(x, 16)), D)\n}\n", "Net(x, D)", ", equivariant=true", None),
}


@pytest.mark.parametrize("name", list(FRAMES))
def test_frame_averaging_makes_any_block_exact(name):
    group, shape, block, call, extra, code = FRAMES[name]
    claim = "equivariant" if extra else "invariant"
    src = (f"{group}\n{block}model M(D: int = 3) {{\n  input x: {shape} acted by R\n"
           f"  output y = frame_average({call}, group=R{extra})\n  ensure y {claim} under R\n}}\n")
    dims = {"N": 6} if "N" in shape else {}
    r = nndsl.check(source=src, B=2, **dims)
    assert [d.code for d in r.diagnostics] == [], (name, r.diagnostics)
    (v,) = verify(r.ir, samples=8, sizes={"S": 6, "N": 6})
    assert v.error < 1e-9, (name, v.error)
    without = src.replace(f"frame_average({call}, group=R{extra})", call)
    r2 = nndsl.check(source=without, B=2, **dims)
    assert [d.code for d in r2.diagnostics] in (["E0802"], ["W0801"]), (name, r2.diagnostics)
    assert verify(r2.ir, samples=8, sizes={"S": 6, "N": 6})[0].error > 1e-3


def test_frame_average_is_checked():
    base = ("group R = o3(D)\ngroup P = perm(N)\nblock Net {\n  input x: [B, N, 3]\n  output y = linear(x, 2)\n}\n"
            "model M(D: int = 3) {\n  input x: [B, N, D] acted by R, P\n  output y = %s\n}\n")
    bad = {
        "frame_average(Net(x), group=P)": "E0801",                # N! elements
        "frame_average(linear(x, 2), group=R)": "E0106",          # not a block
        "frame_average(Net(x), group=R, equivariant=true)": "E0801",   # no output axis of size 3
        "frame_average(Net(x), group=R, frames=3)": "E0104",
        "x |> frame_average(Net(x), group=R)": "E0106",
    }
    for call, code in bad.items():
        r = nndsl.check(source=base % call)
        assert [d.code for d in r.diagnostics] == [code], (call, r.diagnostics)
        assert r.diagnostics[0].span is not None


def test_the_new_examples_prove_and_verify_every_claim():
    for name in ("c4_cnn", "frame_averaged_pointnet"):
        r = nndsl.check(str(ROOT / "examples" / f"{name}.nn"))
        assert r.ok and not r.diagnostics, r.diagnostics
        assert all(c.verdict == "proved" for c in r.ir.meta.claims)
        for v in verify(r.ir, samples=4):
            assert v.error < 1e-9, (name, v)


# -- transposed tying: W_dec = W_encᵀ ---------------------------------------------------------------------
AE = "model AE(D: int = 12, H: int = 5) {\n  input x: [B, D]\n  enc = linear(x, H)\n  h = relu(enc)\n%s\n}\n"


def test_a_transposed_tie_shares_the_weight_and_keeps_its_own_bias():
    import torch
    import torch.nn.functional as F

    from nndsl.passes.ensures import param_count

    src = AE % "  output dec = linear(h, D, tie=transpose(enc))"
    r = nndsl.check(source=src)
    assert r.ok, r.diagnostics
    assert param_count(r.ir) == 12 * 5 + 5 + 12                      # the decoder stores only its bias
    m = nndsl.load(source=src, seed=0)
    assert sorted(m.state_dict()) == ["dec.bias", "enc.bias", "enc.weight"]
    x = torch.randn(3, 12)
    want = F.linear(torch.relu(F.linear(x, m.enc.weight, m.enc.bias)), m.enc.weight.t(), m.dec.bias)
    y = m(x)
    assert torch.equal(y, want)
    y.square().sum().backward()                                        # both uses reach the one weight
    w = m.enc.weight.detach().requires_grad_()
    F.linear(torch.relu(F.linear(x, w, m.enc.bias.detach())), w.t(), m.dec.bias.detach()).square().sum().backward()
    assert torch.allclose(m.enc.weight.grad, w.grad)
    torch.export.export(m, (x,))


def test_a_transposed_tie_is_checked():
    bad = {
        "  output dec = linear(h, 7, tie=transpose(enc))": "E0114",                   # [7, 5] is not [5, 12]ᵀ
        "  output dec = conv1d(unsqueeze(h, 1), 2, kernel=1, tie=transpose(enc))": None,   # any error, not a crash
        "  d1 = linear(h, D, tie=transpose(enc))\n  output d2 = linear(h, D, tie=d1)": "E0114",  # tie to a tie
    }
    for body, code in bad.items():
        r = nndsl.check(source=AE % body)
        assert not r.ok and r.diagnostics[0].span is not None, (body, r.diagnostics)
        if code:
            assert r.diagnostics[0].code == code, (body, r.diagnostics)


# -- finite groups given by generator matrices ------------------------------------------------------------
MATS = {
    # group, body, claim, expected
    "d4-gram": ("[[0, -1], [1, 0]], [[1, 0], [0, -1]]", "  output y = matmul(x, transpose(x, 1, 2))",
                "y invariant under R", None),
    "d4-relu": ("[[0, -1], [1, 0]], [[1, 0], [0, -1]]", "  output y = relu(x)", "y equivariant under R", "E0802"),
    "swap-relu": ("[[0, 1], [1, 0]]", "  output y = relu(x)", "y equivariant under R", None),
    "swap-sum": ("[[0, 1], [1, 0]]", "  output y = sum(relu(x), axes=[2])", "y invariant under R", None),
    "skew-gram": ("[[1, 1], [0, -1]]", "  output y = matmul(x, transpose(x, 1, 2))", "y invariant under R", "W0801"),
    "sixfold": ("[[cos(pi / 3), -sin(pi / 3)], [sin(pi / 3), cos(pi / 3)]]", "  output y = sum(x, axes=[1])",
                "y equivariant under R", None),
}


@pytest.mark.parametrize("name", list(MATS))
def test_matrix_groups_agree_with_the_numbers(name):
    gens, body, claim, code = MATS[name]
    src = f"group R = matrices(D, {gens})\nmodel M(D: int = 2) {{\n  input x: [B, N, D] acted by R\n{body}\n" \
          f"  ensure {claim}\n}}\n"
    r = nndsl.check(source=src, B=2, N=4)
    assert [d.code for d in r.diagnostics] == ([code] if code else []), (name, r.diagnostics)
    (v,) = verify(r.ir, samples=10)
    assert (v.error < 1e-9) if code is None else (v.error > 1e-3), (name, v.error)


def test_matrix_groups_are_checked():
    for gens, why in (("[[2, 0], [0, 1]]", "more than 512"), ("[[1, 0], [0, 1, 2]]", "square"),
                      ("[[0, 1], [1, 0]], [[1, 0, 0], [0, 1, 0], [0, 0, 1]]", "one size"), ("[[x, 0], [0, 1]]", "number"),
                      ("[[1 / 0, 0], [0, 1]]", "division by zero")):
        src = f"group R = matrices(D, {gens})\nmodel M(D: int = 2) {{\n  input x: [B, D] acted by R\n  output x\n}}\n"
        r = nndsl.check(source=src)
        (d,) = r.diagnostics
        assert d.code == "E0801" and why in d.message, (gens, d.message)
    src = "group R = matrices(D, [[0, 1], [1, 0]])\nmodel M(D: int = 3) {\n  input x: [B, D] acted by R\n  output x\n}\n"
    assert [d.code for d in nndsl.check(source=src).diagnostics] == ["E0801"]            # 2x2 matrices, 3 coordinates


def test_frame_averaging_over_a_matrix_group():
    src = ("group R = matrices(D, [[0, -1], [1, 0]], [[1, 0], [0, -1]])\nblock Net {\n  input p: [B, N, 2]\n"
           "  output y = linear(relu(linear(p, 8)), 2)\n}\nmodel M(D: int = 2) {\n  input x: [B, N, D] acted by R\n"
           "  output f = frame_average(Net(x), group=R, equivariant=true)\n  ensure f equivariant under R\n}\n")
    r = nndsl.check(source=src, B=2, N=5)
    assert r.ok and not r.diagnostics, r.diagnostics
    assert len(r.ir.meta.instances["f"].frame.elements) == 8
    assert verify(r.ir, samples=10)[0].error < 1e-9


# -- equivariant_linear between representations of one axis ------------------------------------------------
AXIS = {
    # group, axis size, maps m, invariant vectors k
    "cyclic(D)": (6, 6, 1), "dihedral(D)": (6, 4, 1), "perm(D)": (5, 2, 1), "o3(D)": (3, 1, 0), "so3(D)": (2, 2, 0),
    "matrices(D, [[0, -1], [1, 0]])": (2, 2, 0), "matrices(D, [[0, 1], [1, 0]])": (2, 2, 1),
}


@pytest.mark.parametrize("group", list(AXIS))
def test_equivariant_linear_over_any_axis_action(group):
    import torch

    from nndsl.passes.ensures import param_count

    d, m, k = AXIS[group]
    src = (f"group G = {group}\nmodel M(D: int = {d}) {{\n  input x: [B, N, 3, D] acted by G\n"
           "  h = relu(equivariant_linear(x, 8, group=G))\n  output y = equivariant_linear(h, 2, group=G)\n"
           "  ensure y equivariant under G\n}\n")
    r = nndsl.check(source=src, B=2, N=3)
    assert param_count(r.ir) == 8 * 3 * m + 8 * k + 2 * 8 * m + 2 * k
    relu_kept = group.startswith(("cyclic", "dihedral", "perm", "matrices(D, [[0, 1]"))
    (v,) = verify(r.ir, samples=8)
    if relu_kept:                        # permutations commute with relu: proved, and the numbers agree
        assert not r.diagnostics and r.ir.meta.claims[0].verdict == "proved" and v.error < 1e-9, v.error
    else:                                # a rotation does not: refuted at the relu, and the numbers fail
        assert [d.code for d in r.diagnostics] == ["E0802"] and "`relu`" in r.diagnostics[0].message
        assert v.error > 1e-3
    # each layer alone is equivariant for any action of the group on its last axis
    one = src.replace("  h = relu(equivariant_linear(x, 8, group=G))\n  output y = equivariant_linear(h, 2, group=G)",
                      "  output y = equivariant_linear(x, 2, group=G)")
    r1 = nndsl.check(source=one, B=2, N=3)
    assert r1.ir.meta.claims[0].verdict == "proved" and verify(r1.ir, samples=8)[0].error < 1e-9
    # the signal the pass predicts is the one the layer draws
    pred = nndsl.check(source=one, signal=True, B=256, N=8).ir.signal
    x = torch.randn(256, 8, 3, d)
    with torch.no_grad():
        got = torch.stack([nndsl.load(source=one, seed=s, B=256, N=8)(x).square().mean() for s in range(12)]).mean()
    q = next(row[2] for row in pred.rows if row[0] == "y")
    assert abs(float(got) / q - 1) < 0.2, (float(got), q)


def test_equivariant_linear_with_a_group_is_checked():
    base = "group G = {g}\nmodel M(D: int = 4) {{\n  input x: [B, 3, D] acted by G\n  output y = {call}\n}}\n"
    for g, call, code in (("c4(S)", "equivariant_linear(x, 2, group=G)", "E0801"),
                          ("cyclic(D)", "equivariant_linear(x, 2, group=H)", "E0801"),
                          ("matrices(D, [[0, 1], [1, 0]])", "equivariant_linear(x, 2, group=G)", "E0201")):
        src = base.format(g=g, call=call)
        r = nndsl.check(source=src if code != "E0201" else src.replace(" acted by G", ""))
        assert [d.code for d in r.diagnostics][:1] == [code], (g, r.diagnostics)


def test_equivariant_models_export_and_compile():
    """What nndsl emits for group convolutions, frame averaging and tied weights is plain PyTorch that
    torch.export and torch.compile(fullgraph=True) take unchanged."""
    import torch

    for name, x in (("c4_cnn", torch.randn(2, 1, 8, 8)), ("frame_averaged_pointnet", torch.randn(2, 10, 3))):
        m = nndsl.load(str(ROOT / "examples" / f"{name}.nn"), seed=0).eval()
        want = m(x)
        want = want if isinstance(want, tuple) else (want,)
        got = torch.export.export(m, (x,)).module()(x)
        got = got if isinstance(got, tuple) else (got,)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(want, got)), name
        comp = torch.compile(m, fullgraph=True)(x)
        comp = comp if isinstance(comp, tuple) else (comp,)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(want, comp)), name


def test_the_new_ops_round_trip_through_json_and_the_summary():
    import json

    from nndsl.backends.summary import to_dict
    from nndsl.ir import IR

    src = ("group T = cyclic(D)\ngroup R = c4(S)\nmodel M(D: int = 6) {\n  input x: [B, 2, D] acted by T\n"
           "  input im: [B, 1, S, S] acted by R\n  y = equivariant_linear(x, 3, group=T)\n"
           "  g = group_pool(gconv2d(im, 4, kernel=3, group=R, padding=1))\n  output y\n  output g\n}\n")
    r = nndsl.check(source=src)
    assert r.ok, r.diagnostics
    j = r.ir.to_json()
    assert IR.from_json(j).to_json() == j
    json.dumps(to_dict(r.ir))
