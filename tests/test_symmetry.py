"""Groups, representations and the equivariant-layer solver (issue 10, first part): the dimensions the
literature gives, the orbit and SVD solvers agreeing, and layers that are equivariant to float64
precision."""
from __future__ import annotations

import random
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

from nndsl.symmetry import (SymmetryError, basis, bell, cyclic, dihedral, dimension, from_matrices, gconv_rep, grid,
                            permutation, regular, sign, symmetric, trivial)
from nndsl.symmetry.layers import EquivariantLinear, act


def dense(rep):
    """The same representation given by its matrices: solved by SVD, not by orbits."""
    return from_matrices(rep.group, [rep.matrix(k) for k in range(len(rep.group.generators))])


@pytest.mark.parametrize("n", [4, 5, 8])
def test_symmetric_group_dimensions_are_bell_numbers(n):
    S = symmetric(n)
    P, T = permutation(S), trivial(S)
    got = {"set->set": dimension(P, P), "set->scalar": dimension(T, P), "matrix->matrix": dimension(P ** 2, P ** 2),
           "matrix->set": dimension(P, P ** 2), "matrix->scalar": dimension(T, P ** 2)}
    assert got == {"set->set": 2, "set->scalar": 1, "matrix->matrix": 15, "matrix->set": 5, "matrix->scalar": 2}
    assert [bell(k) for k in range(6)] == [1, 1, 2, 5, 15, 52]


@pytest.mark.parametrize("group,fiber,free", [("C4", "lifting", 9), ("C4", "regular", 36), ("D4", "regular", 72),
                                              ("D4", "lifting", 9)])
def test_group_convolution_free_parameters_per_channel_pair(group, fiber, free):
    rin, rout = gconv_rep(group, 3, fiber)
    assert dimension(rout, rin) == free


def test_groups_have_their_orders():
    assert [symmetric(n).order for n in (1, 2, 3, 5)] == [1, 2, 6, 120]
    assert cyclic(7).order == 7 and dihedral(6).order == 12
    assert grid("C4", 3).order == 4 and grid("D4", 4).order == 8
    assert regular(dihedral(4)).dim == 8
    with pytest.raises(SymmetryError):
        symmetric(0)
    with pytest.raises(SymmetryError):
        symmetric(12).elements          # 479,001,600 elements: refused before enumerating them


@pytest.mark.parametrize("n", [2, 3, 4])
def test_orbit_and_svd_solvers_agree_with_signs(n):
    S = symmetric(n)
    P, sg = permutation(S), sign(S)
    for a, b in [(P, P), (P * sg, P * sg), (sg, P ** 2), (P ** 2, sg), (sg * P, P ** 2), (P ** 2, P ** 2 * sg),
                 (regular(S), P)]:
        orb, svd = basis(a, b), basis(dense(a), dense(b))
        assert orb.shape[0] == svd.shape[0], (a.name, b.name)
        for k in range(len(S.generators)):            # every map commutes with the group
            if len(orb):
                assert np.abs(a.matrix(k) @ orb - orb @ b.matrix(k)).max() < 1e-12
                assert np.abs(a.matrix(k) @ svd - svd @ b.matrix(k)).max() < 1e-9
        if len(orb):                                   # and they span the same space
            assert np.linalg.matrix_rank(np.concatenate([orb.reshape(len(orb), -1), svd.reshape(len(svd), -1)])) \
                == len(orb)


def test_cyclic_regular_maps_are_circulant():
    R = regular(cyclic(5))
    B = basis(R, R)
    assert B.shape == (5, 5, 5)
    w = np.tensordot(np.arange(1.0, 6.0), B, 1)
    assert all(np.allclose(np.roll(w[0], i), w[i]) or np.allclose(np.roll(w[:, 0], i), w[:, i]) for i in range(5))


@pytest.mark.parametrize("case", ["set", "matrix", "matrix_to_set", "set_to_scalar", "c4_regular", "d4_lifting"])
def test_layers_are_equivariant_in_float64(case):
    torch.manual_seed(0)
    if case.startswith(("c4", "d4")):
        rin, rout = gconv_rep(case[:2].upper(), 3, "regular" if "regular" in case else "lifting")
    else:
        S = symmetric(5)
        P = permutation(S)
        rin, rout = {"set": (P, P), "matrix": (P ** 2, P ** 2), "matrix_to_set": (P ** 2, P),
                     "set_to_scalar": (P, trivial(S))}[case]
    layer = EquivariantLinear(rin, rout, 3, 4).double()
    with torch.no_grad():
        if layer.bias is not None:
            layer.bias.normal_()
    x = torch.randn(6, 3, rin.dim, dtype=torch.float64)
    g = rin.group
    with torch.no_grad():
        for e in random.Random(1).sample(range(g.order), min(g.order, 12)):
            assert float((layer(act(rin, e, x)) - act(rout, e, layer(x))).abs().max()) < 1e-12
    y = layer(x)
    y.pow(2).sum().backward()
    assert layer.weight.grad.shape == layer.weight.shape


def test_a_plain_linear_layer_is_not_equivariant():
    """The numerical test can fail: a dense weight mixing the permuted axis breaks S_n."""
    S = symmetric(5)
    P = permutation(S)
    torch.manual_seed(0)
    w = torch.randn(5, 5, dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64)
    errs = [float((act(P, e, x) @ w.t() - act(P, e, x @ w.t())).abs().max()) for e in range(1, S.order)]
    assert max(errs) > 1e-2


def test_init_gives_unit_scale_outputs():
    torch.manual_seed(0)
    S = symmetric(8)
    P = permutation(S)
    layer = EquivariantLinear(P ** 2, P ** 2, 16, 16, bias=False)
    with torch.no_grad():
        y = layer(torch.randn(64, 16, 64))
    assert 0.6 < float(y.std()) < 1.6


def test_the_front_end_of_symmetry_does_not_import_torch():
    code = ("import sys; from nndsl.symmetry import symmetric, permutation, dimension; "
            "P = permutation(symmetric(6)); assert dimension(P ** 2, P ** 2) == 15; "
            "assert 'torch' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


RELU_MLP = '''model MLP(D: int = 16) {
  input x: [B, D]
  h = relu(linear(x, 32))
  g = relu(linear(h, 24))
  r = relu(linear(g, 24)) + g
  output y = linear(r, 3)
}
'''


def test_hidden_relu_symmetries_are_found_where_nothing_else_reads_the_units():
    import nndsl
    from nndsl.symmetry.relu import hidden_symmetries

    found = hidden_symmetries(nndsl.check(source=RELU_MLP).ir)
    # h's units reach g only through relu; g's also feed a residual, r's an add: no symmetry there
    assert [(h.first, h.second, h.units) for h in found] == [("h_linear", "g_linear", 32)]
    conv = '''model C {
  input x: [B, 3, 8, 8]
  a = leaky_relu(conv2d(x, 8, 3, padding=1), 0.1)
  output y = conv2d(a, 4, 3, groups=1)
}
'''
    assert [(h.first, h.units, h.axis) for h in hidden_symmetries(nndsl.check(source=conv).ir)] == [("a_conv2d", 8, 1)]


def test_canonicalize_keeps_the_function_and_merges_equivalent_weights():
    import copy

    import nndsl
    from nndsl.symmetry.relu import canonicalize

    for src, shape in ((RELU_MLP, (40, 16)), ('''model C {
  input x: [B, 3, 8, 8]
  a = relu(conv2d(x, 8, 3, padding=1))
  output y = conv2d(a, 4, 3)
}
''', (5, 3, 8, 8))):
        ir = nndsl.check(source=src).ir
        m = nndsl.load(source=src, seed=0).double()
        x = torch.randn(*shape, dtype=torch.float64)
        y = m(x)
        # an equivalent network: the hidden units permuted and rescaled
        other = copy.deepcopy(m)
        first, second = ("h_linear", "g_linear") if "MLP" in src else ("a_conv2d", "y")
        a, b = other.get_submodule(first), other.get_submodule(second)
        n = a.weight.shape[0]
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
        c = torch.rand(n, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.5
        with torch.no_grad():
            a.weight.copy_(a.weight[perm] * c.view(-1, *([1] * (a.weight.dim() - 1))))
            a.bias.copy_(a.bias[perm] * c)
            b.weight.copy_(b.weight[:, perm] / c.view(1, -1, *([1] * (b.weight.dim() - 2))))
        assert torch.allclose(other(x), y, atol=1e-10)
        canonicalize(m, ir)
        canonicalize(other, ir)
        assert torch.allclose(m(x), y, atol=1e-10)
        for (k, v), (_, w) in zip(m.state_dict().items(), other.state_dict().items()):
            assert torch.allclose(v, w, atol=1e-10), k


def test_summary_lists_the_symmetries(tmp_path):
    f = tmp_path / "m.nn"
    f.write_text(RELU_MLP)
    r = subprocess.run([sys.executable, "-m", "nndsl", "summary", str(f), "--symmetries"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "h_linear -> relu -> g_linear: 32 units, permutations (32!) and a positive scale each" in r.stdout


def test_equivariance_error_and_the_soft_penalty():
    from nndsl.symmetry.layers import equivariance_error, penalty

    torch.manual_seed(0)
    S = symmetric(6)
    P = permutation(S)
    eq = EquivariantLinear(P, P).double()
    x = torch.randn(8, 1, 6, dtype=torch.float64)
    assert equivariance_error(eq, x, P, P) < 1e-12
    assert float(penalty(eq, x, P, P).detach()) < 1e-20
    dense = torch.nn.Linear(6, 6).double()
    assert equivariance_error(dense, x, P, P) > 1e-2
    # the penalty pulls a free layer towards equivariance
    opt = torch.optim.Adam(dense.parameters(), lr=0.05)
    start = float(penalty(dense, x, P, P, samples=8).detach())
    for _ in range(200):
        opt.zero_grad()
        penalty(dense, x, P, P, samples=8, seed=_).backward()
        opt.step()
    assert float(penalty(dense, x, P, P, samples=8).detach()) < 0.05 * start
    inv = lambda t: t.sum(-1, keepdim=True)        # noqa: E731 - a sum is invariant
    assert equivariance_error(inv, x, P, trivial(S)) < 1e-12


def test_symmetric_weights_store_a_triangle_and_stay_symmetric(tmp_path):
    import nndsl
    from nndsl.backends.summary import totals
    from nndsl.sparsity.project import dense_weight, load_dense, project

    src = (Path(__file__).resolve().parents[1] / "examples" / "hopfield.nn").read_text()
    r = nndsl.check(source=src, signal=True)
    assert r.ok, r.diagnostics
    assert totals(r.ir)["total_params"] == 3 * (64 * 65 // 2 + 64)
    m = nndsl.load(source=src, seed=0)
    # the signal pass predicts the first layer's output (PyTorch's default init of the stored entries)
    with torch.no_grad():
        q = float(m.u1(torch.randn(8192, 64, generator=torch.Generator().manual_seed(0))).pow(2).mean())
    pred = {row[0]: row[2] for row in r.ir.signal.rows}["u1"]
    assert abs(q / pred - 1) < 0.15, (q, pred)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(10):
        opt.zero_grad()
        m(torch.randn(8, 64)).pow(2).sum().backward()
        opt.step()
    for name in ("u1", "u2", "u3"):
        w = dense_weight(m.get_submodule(name)).detach()
        assert torch.equal(w, w.t())
    # the closest symmetric matrix to a dense one is (W + Wᵀ) / 2, and a dense checkpoint loads into it
    a = torch.randn(64, 64)
    sym = project(a, "symmetric")["weight_packed"][m.u1.weight_index]
    assert torch.allclose(sym, (a + a.t()) / 2)
    dense = {"u1.weight": a, "u1.bias": torch.zeros(64), "u2.weight": a.t().contiguous(), "u2.bias": torch.zeros(64),
             "u3.weight": (a + a.t()) / 2, "u3.bias": torch.zeros(64)}
    errors = load_dense(m, dense)
    assert errors["u3"] < 1e-6 and 0 < errors["u1"] < 1
    bad = "model M {\n  input x: [B, 8]\n  y = linear(x, 4) structure symmetric\n  output y\n}\n"
    assert [d.code for d in nndsl.check(source=bad).diagnostics] == ["E0702"]


def test_continuous_groups_by_their_lie_algebra():
    """SO(2) on the plane commutes with a·I + b·J (2 maps); SO(3) maps vectors to vectors by a multiple of the
    identity (1), a pair of vectors to a scalar by the dot product (1) and to a vector by the cross product
    (1), which the reflection −I of O(3) forbids (0)."""
    import numpy as np

    from nndsl.symmetry import lie_basis, lie_tensor, so2_algebra, so3_algebra

    assert lie_basis(so2_algebra(), so2_algebra()).shape[0] == 2
    v = so3_algebra()
    scalar = [np.zeros((1, 1))] * 3
    vv = lie_tensor(v, v)
    (ident,) = lie_basis(v, v)
    assert np.allclose(ident / ident[0, 0], np.eye(3))
    (dot,) = lie_basis(scalar, vv)
    assert np.allclose(dot.reshape(3, 3) / dot[0, 0], np.eye(3))
    (cross,) = lie_basis(v, vv)
    a, b = np.random.default_rng(0).normal(size=(2, 3))
    got = cross @ np.kron(a, b)
    assert np.allclose(got / np.linalg.norm(got), np.cross(a, b) / np.linalg.norm(np.cross(a, b))) or \
        np.allclose(got / np.linalg.norm(got), -np.cross(a, b) / np.linalg.norm(np.cross(a, b)))
    minus = -np.eye(3)
    assert lie_basis(v, vv, discrete=[(minus, np.kron(minus, minus))]).shape[0] == 0      # O(3): a pseudovector
    assert lie_basis(scalar, vv, discrete=[(np.eye(1), np.kron(minus, minus))]).shape[0] == 1
