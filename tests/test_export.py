"""`nndsl export`: every example goes through torch.export and, but for the one that needs an
eigendecomposition, through ONNX (onnx.checker with strict shape inference, then onnxruntime against the
eager module on inputs of other sizes than the traced ones); free dims stay dynamic, with the ranges the
spec states."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nndsl
from nndsl.backends.export import ExportError, example_inputs, export_program, onnx_bytes, verify_onnx
from nndsl.passes.ensures import sample_dims

ROOT = Path(__file__).resolve().parents[1]
# Examples whose export takes 15-70 s here, left out to keep the suite short (`nndsl export` takes them):
# conv nets whose ops the others cover (DenseNet-121's 58 concatenations are the slowest), and Swin-T,
# whose blocks test_swin_blocks_export exports at a small width
HEAVY = {"densenet121", "convnext_t", "efficientnet_b0", "swin_t"}
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.nn") if p.stem not in HEAVY)
# the large examples at a smaller width (the same layers, fewer parameters to serialise)
SMALL = {"gpt2_small": dict(vocab=512, n_ctx=64, D=64, depth=2, heads=4),
         "vit_b16": dict(D=64, depth=2, heads=4, mlp_dim=128, num_classes=10), "unet": dict(base=8),
         "bert_base": dict(vocab=512, D=64, heads=4, hidden=128, depth=2),
         "llama": dict(vocab=512, D=64, heads=4, hidden=128, depth=2)}
NO_ONNX = {"frame_averaged_pointnet": "_linalg_eigh"}      # PCA frames: ONNX has no eigendecomposition


def built(name):
    dims = SMALL.get(name, {})
    path = str(ROOT / "examples" / f"{name}.nn")
    return nndsl.load(path, seed=0, **dims).eval(), nndsl.check(path, **dims).ir


@pytest.mark.parametrize("name", EXAMPLES)
def test_torch_export_round_trip(name, tmp_path):
    m, ir = built(name)
    prog = export_program(m, ir)
    path = tmp_path / f"{name}.pt2"
    torch.export.save(prog, str(path))
    loaded = torch.export.load(str(path)).module()
    xs = example_inputs(ir, sample_dims(ir, default=24), torch.Generator().manual_seed(3))   # other sizes
    with torch.no_grad():
        want, got = m(*xs), loaded(*xs)
    want, got = (want if isinstance(want, tuple) else (want,)), (got if isinstance(got, tuple) else (got,))
    for a, b in zip(want, got):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (name, float((a - b).abs().max()))


def test_stated_ranges_become_the_dims_ranges():
    m, ir = built("gpt2_small")
    prog = export_program(m, ir)
    ranges = sorted((int(r.lower), r.upper) for r in prog.range_constraints.values())
    assert (2, 64) in [(lo, int(hi) if str(hi) != "int_oo" else None) for lo, hi in ranges]     # T <= n_ctx


@pytest.mark.parametrize("name", EXAMPLES)
def test_onnx_round_trip(name):
    import onnx

    m, ir = built(name)
    if name in NO_ONNX:
        with pytest.raises(ExportError, match=NO_ONNX[name]):
            onnx_bytes(m, ir)
        return
    data = onnx_bytes(m, ir)                       # checked by onnx.checker and strict shape inference
    assert verify_onnx(data, m, ir) < 1e-4
    graph = onnx.load_from_string(data).graph
    for mi, gi in zip(ir.meta.inputs, graph.input):
        dims = gi.type.tensor_type.shape.dim
        for d, od in zip(mi.type.shape, dims):
            assert (od.dim_param != "") == (not d.is_const), (name, mi.name)       # free dims are dynamic


def test_a_stated_range_starts_past_sizes_that_make_a_map_one_wide():
    """`ensure H >= 8` with a stride-8 conv: at H = 8 ... 15 the map inside is 1 wide, which torch.export
    specialises; the program takes H from 16 (it used to be refused as "Constraints violated")."""
    src = ("model M {\n  input x: [B, 3, H, W]\n  ensure H >= 8\n  ensure W >= 8\n"
           "  c = conv2d(x, 4, kernel=8, stride=8)\n  output c |> conv2d(4, kernel=1) |> mean(axes=[2, 3])\n}\n")
    ir = nndsl.check(source=src).ir
    m = nndsl.load(source=src, seed=0).eval()
    prog = export_program(m, ir)
    assert sorted(int(r.lower) for r in prog.range_constraints.values()) == [2, 16, 16]
    for h, w in ((16, 24), (40, 17)):
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            assert torch.allclose(prog.module()(x), m(x), atol=1e-6)


def test_a_stated_range_torch_export_cannot_prove_is_left_to_it():
    """ConvNeXt's stem and layer scale under `ensure W >= 16`: torch.export makes guards it cannot prove
    over the stated range ("Constraints violated"); the dims are then Dim.AUTO and both exporters work."""
    src = ("model M {\n  input x: [B, 3, H, W]\n  ensure H >= 16\n  ensure W >= 16\n"
           "  c = conv2d(x, 8, kernel=4, stride=4)\n"
           "  h = c |> permute(dims=[0, 2, 3, 1]) |> layernorm |> linear(8) |> permute(dims=[0, 3, 1, 2])\n"
           "  scale = param([8, 1, 1], fill=0.5)\n  output mean(scale * h + c, axes=[2, 3])\n}\n")
    ir = nndsl.check(source=src).ir
    m = nndsl.load(source=src, seed=0).eval()
    prog = export_program(m, ir)
    x = torch.randn(2, 3, 36, 52)
    with torch.no_grad():
        assert torch.allclose(prog.module()(x), m(x), atol=1e-5)
    assert verify_onnx(onnx_bytes(m, ir), m, ir) < 1e-4


def test_swin_blocks_export(tmp_path):
    """Swin-T's shifted-window blocks (roll, window partition, the relative position index buffer, the
    mask buffer, take) through both exporters, at a small width: the whole model takes 30 s here."""
    spec = tmp_path / "swin_small.nn"
    spec.write_text(f'import "{ROOT / "examples" / "swin_t.nn"}"\n'
                    "model Small {\n  input x: [B, 14, 14, 24]\n"
                    "  blocks = x |> SwinBlock(24, 3, 14, false, 0.0) |> SwinBlock(24, 3, 14, true, 0.0)\n"
                    "  output blocks\n}\n")
    res = nndsl.check(spec)
    assert res.ok, [d.message for d in res.diagnostics]
    m = nndsl.load(spec, seed=0).eval()
    prog = export_program(m, res.ir)
    x = torch.randn(3, 14, 14, 24)
    with torch.no_grad():
        assert torch.allclose(prog.module()(x), m(x), atol=1e-5)
    assert verify_onnx(onnx_bytes(m, res.ir), m, res.ir) < 1e-4


def test_the_command(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "nndsl", "export", *map(str, args)], capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)

    r = run(ROOT / "examples" / "deepsets.nn", "--onnx", tmp_path / "d.onnx", "--torch-export", tmp_path / "d.pt2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "d.onnx").stat().st_size > 0 and (tmp_path / "d.pt2").stat().st_size > 0
    assert "onnxruntime vs eager" in r.stderr
    r = run(ROOT / "examples" / "frame_averaged_pointnet.nn", "--onnx", tmp_path / "f.onnx")
    assert r.returncode == 1 and "error[E0406]" in r.stderr and "_linalg_eigh" in r.stderr
    assert not (tmp_path / "f.onnx").exists()
    assert run(ROOT / "examples" / "deepsets.nn").returncode == 2
