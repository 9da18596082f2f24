"""Sparse and structured weights (issue 9): declarations, counts, semantics through training, projections,
the emitted source, torch.compile and DDP. Kernels: tests/test_kernels.py."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nndsl
from nndsl.backends.summary import totals
from nndsl.sparsity import erk_densities
from nndsl.sparsity import runtime as R
from nndsl.sparsity.project import dense_weight, load_dense, project
from nndsl.syntax.parser import parse_recovering
from nndsl.syntax.unparse import unparse

ROOT = Path(__file__).resolve().parents[1]

MIX = '''model Mix(D: int = 64) {
  input x: [B, D]
  a = linear(x, 128) sparsity random(0.25)
  b = linear(relu(a), 128) sparsity monarch(blocks=4)
  c = linear(b, 128) structure lowrank(16)
  d = linear(c, 128) sparsity block(size=16, density=0.25)
  e = linear(d, 128) sparsity nm(2, 4)
  f = linear(e, 128) sparsity block(size=16, density=0.5)
  g = linear(f, 128) sparsity magnitude(0.1)
  h = linear(g, 128) sparsity erk(0.3)
  output y = linear(h, 10) sparsity frozen
}
'''


def check(src: str, **kw):
    return nndsl.check(source=src, **kw)


def codes(src: str) -> list[str]:
    return [d.code for d in check(src).diagnostics]


# -- the language ----------------------------------------------------------------------------------
def test_clauses_parse_and_unparse_and_the_words_stay_names():
    src = '''model M(D: int = 8) {
  input x: [B, D]
  sparsity { linear.weight: random(0.5) }
  sparsity = linear(x, D) sparsity random(0.5)
  structure = linear(sparsity, D) init { weight: normal(0, 1) } structure monarch(blocks=2)
  output y = linear(structure, D) sparsity nm(2, 4)
}
'''
    mod, diags = parse_recovering(src, "x.nn")
    assert not diags
    again, diags2 = parse_recovering(unparse(mod), "y.nn")
    assert not diags2 and unparse(again) == unparse(mod)
    r = check(src)
    assert r.ok, r.diagnostics
    nodes = {n.id: n for n in r.ir.nodes()}
    assert nodes["sparsity"].facets["structure"].rule == "random"           # a binding named `sparsity`
    assert nodes["structure"].facets["structure"].kind == "monarch"
    assert nodes["y"].facets["structure"].kind == "nm"


@pytest.mark.parametrize("n_in,n_out,k,stored", [(1024, 1024, 4, 524_288), (1024, 1024, 32, 65_536),
                                                 (768, 3072, 4, 737_280), (3072, 768, 4, 737_280)])
def test_monarch_parameter_counts(n_in, n_out, k, stored):
    src = f"model M {{\n  input x: [B, {n_in}]\n  output y = linear(x, {n_out}, bias=false) structure monarch({k})\n}}\n"
    r = check(src)
    assert r.ok, r.diagnostics
    t = totals(r.ir)
    assert t["total_params"] == stored and t["nonzero_params"] == stored
    m = nndsl.load(source=src, seed=0)
    assert sum(p.numel() for p in m.parameters()) == stored
    n = r.ir.node("y")
    assert n.facets["structure"].stored == stored and n.facets["structure"].dense_shape == (n_out, n_in)


def test_counts_of_every_kind_match_the_module_and_are_honest():
    r = check(MIX, B=32)
    assert r.ok, r.diagnostics
    t = totals(r.ir)
    m = nndsl.load(source=MIX, seed=0)
    assert t["total_params"] == sum(p.numel() for p in m.parameters())
    assert t["trainable_params"] == sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert t["trainable_params"] == t["total_params"] - 10 * 128            # the frozen readout weight
    assert t["buffers"] == sum(b.numel() for b in m.buffers())
    st = {n.id: n.facets["structure"] for n in r.ir.nodes() if "structure" in n.facets}
    # what may be non-zero is what the module has non-zero (masks exactly, blocks by layout)
    for name in "aefgh":
        assert int((getattr(m, name).weight != 0).sum()) == st[name].nonzero, name
    assert st["a"].nonzero == 128 * 64 // 4 and st["e"].nonzero == 128 * 128 // 2
    assert st["d"].stored == st["d"].nonzero == 16 * 16 * 16 and st["d"].kernel == "bsr-rows"
    assert st["f"].kernel == "dense+mask" and st["f"].nonzero == 32 * 256
    assert st["c"].stored == 16 * 256 and st["b"].stored == 2 * 128 * 128 // 4
    nz = t["nonzero_params"]
    expect = sum(p.numel() for nm, p in m.named_parameters() if not nm.endswith(".weight") or nm == "y.weight")
    expect += sum(s.nonzero for k, s in st.items() if s.kernel == "dense+mask")
    assert nz == expect
    # FLOPs: structured layers count what they compute, masks the dense matmul
    nodes = {n.id: n for n in r.ir.nodes()}
    assert nodes["b"].flops.value == 2 * 32 * st["b"].stored
    assert nodes["d"].flops.value == 2 * 32 * st["d"].stored
    assert nodes["a"].flops.value == 2 * 32 * 64 * 128


def test_summary_shows_stored_nonzero_flops_and_paths(tmp_path):
    f = tmp_path / "mix.nn"
    f.write_text(MIX)
    out = subprocess.run([sys.executable, "-m", "nndsl", "summary", str(f), "--dim", "B=32"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "nonzero_params:" in text and "sparse and structured weights:" in text
    row = next(line for line in text.splitlines() if line.startswith("b ") and "monarch" in line)
    assert "8,192" in row and "16,384" in row and "monarch-bmm" in row and "0.5x" in row
    assert "runs as fast as dense, not faster" in text                  # masks: honest about the CPU
    js = json.loads(subprocess.run([sys.executable, "-m", "nndsl", "summary", str(f), "--json"],
                                   capture_output=True, text=True, timeout=120).stdout)
    layer = next(x for x in js["layers"] if x["name"] == "d")
    assert layer["structure"]["kind"] == "block" and layer["structure"]["kernel"] == "bsr-rows"
    assert {p["name"] for p in layer["parameters"]} == {"weight_blocks", "weight_index", "bias"}


@pytest.mark.parametrize("rule,code", [
    ("random(0)", "E0703"), ("random(1.5)", "E0702"), ("random(0.00001)", "E0703"), ("nm(2, 3)", "E0702"),
    ("nm(4, 4)", "E0702"), ("block(size=7, density=0.5)", "E0702"), ("block(size=16)", "E0702"),
    ("monarch(blocks=3)", "E0702"), ("monarch(blocks=64)", "E0702"), ("lowrank(64)", "E0702"),
    ("lowrank(0)", "E0702"), ("monarch(4, 5)", "E0701"), ("monarch(blocks=\"4\")", "E0701"),
    ("prune(0.5)", "E0701"), ("random(density=D)", "E0702"), ("mask(\"/etc/passwd\")", "E0704"),
    ("mask(\"missing.npy\")", "E0704"), ("frozen(monarch(4), 1)", "E0701"),
])
def test_bad_declarations_are_diagnostics_at_the_declaration(rule, code):
    src = f"model M(D: int = 128) {{\n  input x: [B, D]\n  output y = linear(x, 128) sparsity {rule}\n}}\n"
    r = check(src)
    assert [d.code for d in r.diagnostics] == [code], (rule, r.diagnostics)
    d = r.diagnostics[0]
    assert d.span.line == 3


def test_linear_only_rules_and_tied_weights_and_other_parameters():
    conv = "model M {{\n  input x: [B, 16, 8, 8]\n  output y = conv2d(x, 16, 3) sparsity {}\n}}\n"
    assert codes(conv.format("monarch(4)")) == ["E0702"]
    assert codes(conv.format("block(size=4, density=0.5)")) == ["E0702"]
    assert check(conv.format("nm(2, 4)")).ok and check(conv.format("lowrank(4)")).ok
    assert check(conv.format("random(0.5)")).ok
    tied = '''model M(V: int = 64, D: int = 32) {
  input t: [B, T] int64
  e = embedding(t, V, D)
  output y = linear(e, V, bias=false, tie=e) sparsity random(0.5)
}
'''
    assert codes(tied) == ["E0702"]                       # a weight shared through tie= stays dense
    named = "model M {\n  input x: [B, 8]\n  sparsity { linear.bias: random(0.5) }\n  output y = linear(x, 8)\n}\n"
    assert codes(named) == ["E0702"]
    norm = "model M {\n  input x: [B, 8]\n  output y = layernorm(linear(x, 8)) sparsity random(0.5)\n}\n"
    r = check(norm)                                       # the clause's `weight` of a norm: not structured
    assert r.ok and [n.id for n in r.ir.nodes() if "structure" in n.facets] == ["y.0"] or \
        len([n for n in r.ir.nodes() if "structure" in n.facets]) == 1


def test_model_level_defaults_by_op_kind_and_the_most_specific_wins():
    src = '''model M(D: int = 64) {
  input x: [B, D]
  sparsity { linear.weight: random(0.5) }
  a = linear(x, D)
  b = linear(a, D) sparsity monarch(blocks=4)
  c = linear(b, D)
  output y = c
}
'''
    r = check(src)
    assert r.ok, r.diagnostics
    st = {n.id: n.facets["structure"] for n in r.ir.nodes() if "structure" in n.facets}
    assert (st["a"].rule, st["b"].rule, st["c"].rule) == ("random", "monarch", "random")


def test_erk_densities_keep_the_global_density_and_favour_small_layers():
    shapes = [(64, 3, 3, 3), (128, 64, 3, 3), (256, 128, 3, 3), (10, 256)]
    d = erk_densities(shapes, 0.2)
    sizes = [math.prod(s) for s in shapes]
    assert abs(sum(x * n for x, n in zip(d, sizes)) - 0.2 * sum(sizes)) < 1e-6 * sum(sizes)
    assert d[0] == 1.0 and d[1] > d[2] and all(0 < x <= 1 for x in d)
    src = '''model M {
  input x: [B, 3, 16, 16]
  sparsity { conv2d.weight: erk(0.2), linear.weight: erk(0.2) }
  h = relu(conv2d(x, 64, 3, padding=1))
  g = relu(conv2d(h, 128, 3, padding=1))
  output y = linear(mean(g, [2, 3]), 10)
}
'''
    r = check(src)
    assert r.ok, r.diagnostics
    dens = [n.facets["structure"].density for n in r.ir.nodes() if "structure" in n.facets]
    assert len(dens) == 3 and dens[1] < dens[0]          # one erk declaration per op kind: solved apart


def test_init_rules_see_the_density_and_the_factors():
    src = '''model M(D: int = 512) {
  input x: [B, D]
  a = linear(x, D, bias=false) init { weight: kaiming_normal(nonlinearity="linear") } sparsity random(0.25)
  b = linear(a, D, bias=false) init { weight: kaiming_normal(nonlinearity="linear") } sparsity monarch(8)
  c = linear(b, D, bias=false) init { weight: kaiming_normal(nonlinearity="linear") } structure lowrank(64)
  d = linear(c, D, bias=false) init { weight: kaiming_normal(nonlinearity="linear") } sparsity block(size=32, density=0.25)
  e = linear(d, D, bias=false) init { weight: kaiming_normal(nonlinearity="linear") } sparsity nm(2, 4)
  output y = e
}
'''
    torch.manual_seed(0)
    x = torch.randn(2048, 512)
    qs = []
    for seed in range(4):
        m = nndsl.load(source=src, seed=seed)
        with torch.no_grad():
            h = x
            out = []
            for name in "abcde":
                h = getattr(m, name)(h)
                out.append(float(h.pow(2).mean()))
        qs.append(out)
    mean = np.mean(qs, axis=0)
    assert np.all(np.abs(mean - 1.0) < 0.15), mean       # variance preserved through every structure
    r = check(src, signal=True)
    sig = {row[0]: row[2] for row in r.ir.signal.rows}
    assert all(abs(sig[k] - 1.0) < 1e-3 for k in "abcde"), sig       # fans are whole numbers


def test_a_zero_rule_on_factors_starts_the_layer_at_zero_and_it_still_learns():
    src = '''model M(D: int = 64) {
  input x: [B, D]
  output y = linear(x, D, bias=false) init { weight: zeros } structure lowrank(8)
}
'''
    m = nndsl.load(source=src, seed=0)
    assert float(m.y.weight_u.detach().abs().sum()) == 0 and float(m.y.weight_v.detach().abs().sum()) > 0
    m(torch.randn(4, 64)).pow(2).sum().backward()
    assert m.y.weight_u.grad is not None


# -- semantics through training --------------------------------------------------------------------
@pytest.mark.parametrize("opt", ["adamw", "adam_l2", "sgd_momentum"])
def test_masks_stay_applied_through_training(opt):
    m = nndsl.load(source=MIX, seed=1)
    if opt == "adamw":
        o = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    elif opt == "adam_l2":
        o = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    else:
        o = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-2, momentum=0.9,
                            weight_decay=1e-3)
    zero_before = {n: (getattr(m, n).weight == 0) for n in "aefgh"}
    layout = m.d.weight_index.clone()
    frozen = m.y.weight.detach().clone()
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        x = torch.randn(16, 64, generator=g)
        loss = (m(x) - 1).pow(2).mean()
        o.zero_grad()
        loss.backward()
        o.step()
    for n in "aefgh":
        layer = getattr(m, n)
        assert torch.equal(layer.weight == 0, zero_before[n] | (layer.weight == 0)), n
        w = layer.weight.detach()
        assert float(w[layer.weight_mask == 0].abs().max()) == 0.0, n
    assert torch.equal(m.d.weight_index, layout)
    assert torch.equal(m.y.weight, frozen)
    assert float((m.a.weight != 0).sum()) > 0.9 * 2048     # the kept ones stay alive


def test_state_dict_round_trip_and_the_layout_comes_with_it(tmp_path):
    m = nndsl.load(source=MIX, seed=3)
    x = torch.randn(5, 64)
    y = m(x)
    torch.save(m.state_dict(), tmp_path / "w.pt")
    other = nndsl.load(source=MIX, seed=4)                 # other masks and layout
    assert not torch.allclose(other(x), y)
    other.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert torch.allclose(other(x), y, atol=1e-6)
    assert torch.equal(other.d.weight_index, m.d.weight_index)


def test_same_seed_same_model_and_masks_are_seeded_by_name():
    a = nndsl.load(source=MIX, seed=7)
    b = nndsl.load(source=MIX, seed=7)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    # a layer added before `a` leaves a's mask and weights alone
    more = MIX.replace("  a = linear(x, 128)", "  z = linear(x, 64) sparsity random(0.5)\n  a = linear(z, 128)")
    c = nndsl.load(source=more, seed=7)
    assert torch.equal(c.a.weight_mask, a.a.weight_mask) and torch.equal(c.a.weight, a.a.weight)


def test_lottery_ticket_mask_file_rewinds_to_the_initial_weights(tmp_path):
    dense_src = "model T(D: int = 64) {\n  input x: [B, D]\n  output y = linear(x, 32)\n}\n"
    (tmp_path / "dense.nn").write_text(dense_src)
    w0 = nndsl.load(tmp_path / "dense.nn", seed=11).y.weight.detach().clone()
    mask = (torch.rand(32, 64, generator=torch.Generator().manual_seed(0)) < 0.2).numpy()
    np.save(tmp_path / "ticket.npy", mask)
    (tmp_path / "ticket.nn").write_text(dense_src.replace("linear(x, 32)", 'linear(x, 32) sparsity mask("ticket.npy")'))
    r = nndsl.check(tmp_path / "ticket.nn")
    assert r.ok, r.diagnostics
    st = r.ir.node("y").facets["structure"]
    assert st.nonzero == int(mask.sum())
    t = nndsl.load(tmp_path / "ticket.nn", seed=11)
    assert torch.equal(t.y.weight, w0 * torch.from_numpy(mask))
    np.save(tmp_path / "ticket.npy", np.zeros((32, 64), dtype=bool))
    assert [d.code for d in nndsl.check(tmp_path / "ticket.nn").diagnostics] == ["E0703"]
    np.save(tmp_path / "ticket.npy", np.zeros((3, 64), dtype=bool))
    assert [d.code for d in nndsl.check(tmp_path / "ticket.nn").diagnostics] == ["E0704"]
    np.save(tmp_path / "ticket.npy", np.array([object()] * 4))
    assert [d.code for d in nndsl.check(tmp_path / "ticket.nn").diagnostics] == ["E0704"]


# -- projections -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n_in,n_out,k", [(64, 64, 4), (32, 128, 4), (128, 32, 2), (1024, 1024, 32)])
def test_monarch_projection_is_exact_on_monarch_matrices(n_in, n_out, k):
    torch.manual_seed(0)
    m = R.MonarchLinear(n_in, n_out, blocks=k)
    w = dense_weight(m).detach()
    got = project(w, "monarch", blocks=k)
    w2 = R.monarch_dense(got["weight_r"], got["weight_l"])
    assert float((w2 - w).norm() / w.norm()) < 1e-5
    dense = torch.randn(n_out, n_in)
    approx = R.monarch_dense(*project(dense, "monarch", blocks=k).values())
    # the best Monarch approximation is no worse than a random Monarch rescaled
    assert float((approx - dense).norm()) <= float(dense.norm())


def test_projections_keep_what_they_should():
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    nm = project(w, "nm", n=2, m=4)
    groups = nm["weight"].view(16, 8, 4)
    assert int((groups != 0).sum(-1).max()) == 2
    kept = w.abs().view(16, 8, 4).topk(2, -1).values.sum()
    assert torch.allclose(groups.abs().sum(), kept)
    low = torch.randn(16, 3) @ torch.randn(3, 32)
    lr = project(low, "lowrank", rank=3)
    assert torch.allclose(lr["weight_u"] @ lr["weight_v"], low, atol=1e-4)
    blk = torch.zeros(32, 32)
    blk[0:8, 8:16] = 5.0
    blk[16:24, 0:8] = 1.0
    got = project(blk + 0.01 * torch.randn(32, 32), "block", size=8, blocks=2)
    assert {tuple(x) for x in got["weight_index"].tolist()} == {(0, 1), (2, 0)}


def test_a_dense_checkpoint_loads_into_the_structured_model(tmp_path):
    dense_src = '''model Mix(D: int = 64) {
  input x: [B, D]
  a = linear(x, 128)
  b = linear(relu(a), 128)
  c = linear(b, 128)
  d = linear(c, 128)
  e = linear(d, 128)
  output y = linear(e, 10)
}
'''
    structured = dense_src.replace("b = linear(relu(a), 128)", "b = linear(relu(a), 128) structure monarch(4)") \
        .replace("c = linear(b, 128)", "c = linear(b, 128) structure lowrank(32)") \
        .replace("d = linear(c, 128)", "d = linear(c, 128) sparsity block(size=16, density=0.25)") \
        .replace("e = linear(d, 128)", "e = linear(d, 128) sparsity nm(2, 4)")
    dense = nndsl.load(source=dense_src, seed=0)
    # make b exactly Monarch so its projection is exact
    mon = R.MonarchLinear(128, 128, blocks=4)
    with torch.no_grad():
        dense.b.weight.copy_(dense_weight(mon))
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    (tmp_path / "s.nn").write_text(structured)
    out = subprocess.run([sys.executable, "-m", "nndsl", "project", str(tmp_path / "s.nn"), "--weights",
                          str(tmp_path / "dense.pt"), "-o", str(tmp_path / "s.pt")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "relative error" in out.stderr
    m = nndsl.load(source=structured, seed=5)
    m.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert torch.allclose(dense_weight(m.b), dense.b.weight, atol=1e-5)
    assert torch.equal(m.a.weight, dense.a.weight)
    e = dense.e.weight.detach().view(128, 32, 4)
    assert torch.allclose(m.e.weight.view(128, 32, 4).abs().sum(-1), e.abs().topk(2, -1).values.sum(-1))
    errors = load_dense(nndsl.load(source=structured, seed=1), dense.state_dict())
    assert errors["b"] < 1e-5 and 0 < errors["c"] < 1 and 0 < errors["d"] < 1
    bad = subprocess.run([sys.executable, "-m", "nndsl", "project", str(tmp_path / "s.nn"), "--weights",
                          str(tmp_path / "s.pt"), "-o", str(tmp_path / "x.pt")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "E0405" in bad.stderr


# -- the emitted source, torch.compile, DDP --------------------------------------------------------
def test_emitted_source_runs_without_nndsl(tmp_path):
    src = nndsl.compile_source(source=MIX)
    assert "class MonarchLinear" in src and "class BlockSparseLinear" in src
    (tmp_path / "mix_model.py").write_text(src)
    code = '''
import sys
sys.modules["nndsl"] = None          # nndsl is not installed
import torch
import mix_model
m = mix_model.build(0)
x = torch.randn(8, 64)
loss = m(x).pow(2).mean()
loss.backward()
opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)
for _ in range(3):
    opt.zero_grad(); m(x).pow(2).mean().backward(); opt.step()
assert float(m.a.weight.detach()[m.a.weight_mask == 0].abs().max()) == 0.0
torch.save(m.state_dict(), "sd.pt")
m2 = mix_model.Mix(); m2.load_state_dict(torch.load("sd.pt", weights_only=True))
assert torch.allclose(m2(x), m(x), atol=1e-6)
print("ok")
'''
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET",)}
    env["NNDSL_KERNELS"] = "auto"
    r = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_same_weights_from_the_emitted_source_and_from_load():
    src = nndsl.compile_source(source=MIX)
    ns: dict = {}
    exec(compile(src, "<mix>", "exec"), ns)
    a = ns["build"](5)
    b = nndsl.load(source=MIX, seed=5)
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


def test_torch_compile_fullgraph_takes_a_structured_model():
    m = nndsl.load(source=MIX, seed=0)
    x = torch.randn(8, 64)
    ref = m(x)
    c = torch.compile(m, fullgraph=True, backend="aot_eager")
    out = c(x)
    assert torch.allclose(out, ref, atol=1e-5)
    out.pow(2).sum().backward()
    assert m.b.weight_r.grad is not None and m.d.weight_blocks.grad is not None
    assert float(m.a.weight.grad[m.a.weight_mask == 0].abs().max()) == 0.0      # grads carry no graph
    ep = torch.export.export(m, (x,))
    assert torch.allclose(ep.module()(x), ref, atol=1e-6)


_DDP = '''
import os, sys, torch, torch.distributed as dist
# one intra-op thread per rank, as torchrun sets (OMP_NUM_THREADS=1): with several, a loaded machine can
# split the optimizer's elementwise loops differently on each rank, and an entry computed by the vector
# body on one rank and by the scalar tail on the other differs in its last bit (seen: 2.8e-6 after a step)
torch.set_num_threads(1)
import nndsl
rank, world = int(sys.argv[1]), 2
os.environ["MASTER_ADDR"] = "127.0.0.1"; os.environ["MASTER_PORT"] = sys.argv[2]
dist.init_process_group("gloo", rank=rank, world_size=world)
src = open(sys.argv[3]).read()
m = nndsl.load(source=src, seed=0)
ddp = torch.nn.parallel.DistributedDataParallel(m)
opt = torch.optim.AdamW([p for p in ddp.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
g = torch.Generator().manual_seed(rank)
for _ in range(3):
    opt.zero_grad(); ddp(torch.randn(4, 64, generator=g)).pow(2).mean().backward(); opt.step()
assert float(m.a.weight.detach()[m.a.weight_mask == 0].abs().max()) == 0.0
names = [n for n, _ in m.named_parameters()]
flat = torch.cat([p.detach().flatten() for p in m.parameters()])
got = [torch.zeros_like(flat) for _ in range(world)]
dist.all_gather(got, flat)
if not torch.equal(got[0], got[1]):
    sizes = [p.numel() for p in m.parameters()]
    diff = [(n, float((a - b).abs().max())) for n, a, b in zip(names, got[0].split(sizes), got[1].split(sizes))
            if not torch.equal(a, b)]
    bufs = {n: b.float().sum().item() for n, b in m.named_buffers()}
    print("rank", rank, "differs:", diff, "buffers:", bufs, file=sys.stderr, flush=True)
    raise AssertionError(diff)
dist.barrier()
dist.destroy_process_group()
print("ok", rank, flush=True)
os._exit(0)        # skip interpreter teardown: gloo's threads can abort it ("terminate called ...")
'''


def test_ddp_with_gloo_takes_a_structured_model(tmp_path):
    import socket

    (tmp_path / "mix.nn").write_text(MIX)
    (tmp_path / "ddp.py").write_text(_DDP)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "ddp.py"), str(r), port, str(tmp_path / "mix.nn")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and "ok" in out, err[-2000:]


def test_the_front_end_does_not_import_torch_for_a_sparse_spec(tmp_path):
    (tmp_path / "mix.nn").write_text(MIX)
    code = ("import sys, nndsl; r = nndsl.check(sys.argv[1]); assert r.ok; "
            "assert 'torch' not in sys.modules and 'triton' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "mix.nn")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_conv_layers_take_masks_nm_and_low_rank():
    src = '''model C {
  input x: [B, 16, 10, 10]
  a = conv2d(x, 32, 3, padding=1) init { weight: kaiming_normal() } sparsity random(0.3)
  b = conv2d(relu(a), 32, 3, padding=1, bias=false) sparsity nm(2, 4)
  c = conv2d(relu(b), 16, 3, padding="same", padding_mode="reflect") structure lowrank(rank=4)
  output y = conv1d(mean(c, [3]), 8, 3) sparsity magnitude(0.5)
}
'''
    r = check(src)
    assert r.ok, r.diagnostics
    st = {n.id: n.facets["structure"] for n in r.ir.nodes() if "structure" in n.facets}
    assert st["a"].nonzero == round(0.3 * 32 * 16 * 9) and st["b"].nonzero == 32 * 32 * 9 // 2
    assert st["c"].stored == 4 * (32 * 9 + 16)
    m = nndsl.load(source=src, seed=0)
    x = torch.randn(2, 16, 10, 10)
    for name, layer in (("a", m.a), ("b", m.b)):
        assert int((layer.weight != 0).sum()) == st[name].nonzero
    # N:M along the input channels: at most 2 of every 4 consecutive channels at each tap
    groups = (m.b.weight != 0).movedim(1, -1).reshape(-1, 4)
    assert int(groups.sum(-1).max()) == 2
    with torch.no_grad():                           # the low-rank conv is the conv with the product weight
        h = torch.relu(m.b(torch.relu(m.a(x))))
        ref = torch.nn.functional.conv2d(torch.nn.functional.pad(h, [1, 1, 1, 1], mode="reflect"),
                                         dense_weight(m.c), m.c.bias)
        assert torch.allclose(m.c(h), ref, atol=1e-5)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        m(x).pow(2).mean().backward()
        opt.step()
    for layer in (m.a, m.b, m.y):
        assert float(layer.weight.detach()[layer.weight_mask == 0].abs().max()) == 0.0


def test_a_block_layout_file_places_the_blocks(tmp_path):
    grid = np.zeros((4, 4), dtype=np.uint8)
    grid[0, 3] = grid[2, 1] = grid[3, 3] = 1
    np.save(tmp_path / "layout.npy", grid)
    (tmp_path / "b.nn").write_text('model B {\n  input x: [N, 64]\n'
                                   '  output y = linear(x, 64) sparsity block(size=16, layout="layout.npy")\n}\n')
    r = nndsl.check(tmp_path / "b.nn")
    assert r.ok, r.diagnostics
    st = r.ir.node("y").facets["structure"]
    assert st.stored == 3 * 256 and st.kernel == "bsr-rows"
    m = nndsl.load(tmp_path / "b.nn", seed=0)
    assert sorted(map(tuple, m.y.weight_index.tolist())) == [(0, 3), (2, 1), (3, 3)]
    w = dense_weight(m.y).detach()
    assert float(w[:16, :48].abs().sum()) == 0 and float(w[:16, 48:].abs().sum()) > 0
    np.save(tmp_path / "layout.npy", np.full((4, 4), 2, dtype=np.uint8))
    assert [d.code for d in nndsl.check(tmp_path / "b.nn").diagnostics] == ["E0704"]


def test_two_four_takes_the_dense_path_off_the_gpu(monkeypatch):
    m = R.MaskedLinear(64, 64, sparsity=("nm", {"n": 2, "m": 4, "keep": 64 * 32}))
    x = torch.randn(8, 64)
    with torch.no_grad():
        assert not m._semi_structured_ok(x.half())            # not on a CUDA tensor: never asked
        assert torch.allclose(m(x), x @ (m.weight * m.weight_mask).t() + m.bias)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setenv("NNDSL_KERNELS", "auto")
    m.half()
    with torch.no_grad():
        assert m._semi_structured_ok(x.half())                # inference in fp16 on sm90: semi-structured
        assert m._semi_structured() is None and m._semi is False      # no kernel on the CPU: dense from now on
    assert not m._semi_structured_ok(torch.randn(8, 64))      # fp32 / training: dense + mask


def test_diagram_badges_name_the_structure_and_fit_their_box():
    d = nndsl.draw(ROOT / "examples" / "sparse_mlp.nn", annotate=("sparsity",))
    dot = d.dot
    assert "monarch(blocks=64), 1/32 stored" in dot and "random(density=0.25), 25% kept" in dot
    assert "block(size=64, density=0.1), 10% kept" in dot


def test_edge_cases_build_run_and_move():
    import copy

    src = '''model E(D: int = 96) {
  input x: [B, T, D]
  input s: [B, 4, 32]
  a = linear(x, 96, bias=false) sparsity block(size=24, density=0.25)
  b = linear(a, 192, bias=false) structure monarch(blocks=4)
  c = linear(b, 96) sparsity frozen(monarch(4))
  w = conv1d(s, 8, 3) structure lowrank(2)
  sparsity { *: random(0.9) }
  output y = c
  output u = w
}
'''
    r = check(src)
    assert r.ok and not r.diagnostics, r.diagnostics        # `*` is overridden everywhere: no warning
    m = nndsl.load(source=src, seed=0)
    x, s = torch.randn(2, 5, 96), torch.randn(2, 4, 32)
    y, u = m(x, s)
    (y.sum() + u.sum()).backward()
    assert y.shape == (2, 5, 96) and u.shape == (2, 8, 30)
    assert [n for n, p in m.named_parameters() if not p.requires_grad] == ["c.weight_r", "c.weight_l"]
    assert torch.allclose(copy.deepcopy(m).double()(x.double(), s.double())[0], y.double(), atol=1e-5)
    meta = copy.deepcopy(m).to("meta")                     # deferred init (FSDP): moves without data
    assert meta.a.weight_blocks.is_meta
    with torch.device("meta"):
        assert nndsl.load(source=src, seed=0).b.weight_r.is_meta


PARAMETRIZED = '''model M(D: int = 256) {
  input x: [B, 64]
  parametrization PZ
  h = linear(x, D) sparsity random(0.5)
  g = linear(relu(h), D) structure monarch(blocks=4)
  k = linear(relu(g), D) sparsity block(size=16, density=0.25)
  l = linear(relu(k), D) structure lowrank(16)
  output y = linear(relu(l), 10)
}
'''


def test_structured_layers_under_parametrizations_and_in_place_activations():
    # mup: the factors and blocks of a hidden weight are hidden (Adam lr x 1/m), as the dense weight is
    src = PARAMETRIZED.replace("PZ", "mup(base_width=128)")
    r = check(src)
    assert r.ok, r.diagnostics
    cls = {(n.id, p.name): p.facets["scaling"].cls for n in r.ir.nodes() for p in n.params
           if "scaling" in p.facets and p.name != "bias"}
    assert cls[("h", "weight")] == "input" and cls[("y", "weight")] == "output"
    assert {cls[k] for k in cls if k[0] in "gkl"} == {"hidden"}
    m = nndsl.load(source=src, seed=0)
    y = m(torch.randn(3, 64))                           # relu in place right after each structured layer
    y.sum().backward()
    # ntk: N(0, 1) entries (factors: products of variance 1) behind 1/sqrt(fan_in); the signal pass predicts
    # what the module computes
    src = PARAMETRIZED.replace("PZ", "ntk")
    r = check(src, signal=True)
    pred = {row[0]: row[2] for row in r.ir.signal.rows}
    got = {n: [] for n in "hgkl"}
    for seed in range(3):
        m = nndsl.load(source=src, seed=seed)
        hooks = [getattr(m, n).register_forward_hook(lambda mod, i, o, n=n: got[n].append(float(o.pow(2).mean())))
                 for n in "hgkl"]
        with torch.no_grad():
            m(torch.randn(2048, 64))
        for h in hooks:
            h.remove()
    for n in "hgkl":
        assert abs(np.mean(got[n]) / pred[n] - 1) < 0.15, (n, got[n], pred[n])


def test_lsuv_fits_structured_layers_and_keeps_masks():
    from nndsl.init import lsuv      # the function: nndsl/init/layerwise.py

    m = nndsl.load(source=MIX, seed=0)
    fits = {f.name: f for f in lsuv(m, (torch.randn(64, 64, generator=torch.Generator().manual_seed(0)),), seed=0)}
    assert set(fits) == set("abcdefghy") and fits["y"].skipped == "frozen"
    assert all(abs(fits[n].after - 1) < 0.1 for n in "abcdefgh")
    for layer in (m.a, m.e, m.f, m.g, m.h):
        assert float(layer.weight.detach()[layer.weight_mask == 0].abs().max()) == 0.0


def test_mask_files_cannot_escape_or_block(tmp_path):
    import os

    outside = tmp_path / "outside"
    outside.mkdir()
    np.save(outside / "m.npy", np.ones((4, 16), dtype=bool))
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    os.symlink(outside / "m.npy", spec_dir / "link.npy")
    os.mkfifo(spec_dir / "fifo.npy")
    for name in ("link.npy", "fifo.npy"):
        (spec_dir / "m.nn").write_text(f'model M {{\n  input x: [B, 16]\n  output y = linear(x, 4) sparsity mask("{name}")\n}}\n')
        assert [d.code for d in nndsl.check(spec_dir / "m.nn").diagnostics] == ["E0704"], name
    big = "model M {\n  input x: [B, 1024]\n  output y = linear(x, 4) sparsity nm(500, 1024)\n}\n"
    assert [d.code for d in check(big).diagnostics] == ["E0702"]          # refused before the quadrature
