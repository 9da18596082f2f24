"""Signal-propagation analysis: predicted statistics at init against the compiled module, the warnings,
the CLI. Predictions are mean-field (infinite width); a measurement at width 1024 is one draw of a
random network, so where the variance map is marginal or unstable (relu, gelu) the measurement is the
mean over several weight draws (its spread at depth 20 is ~20% per draw, see docs/init.md)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from nndsl.backends.torch_module import build_module
from nndsl.compiler import check

torch.set_num_threads(2)


def _mlp(act: str, D: int = 1024, depth: int = 20) -> str:
    return f"""
model Deep(D: int = {D}, depth: int = {depth}) {{
  input x: [B, D]
  init {{ linear.weight: variance_preserving(act="{act}"), linear.bias: zeros }}
  h = x |> repeat depth {{ linear(D) |> {act} }}
  output y = linear(h, 10)
}}
"""


def _measure(src: str, dims: dict, shape: tuple, seeds: int, skip=("y",)):
    """Predicted q and the measured E[h²] (mean over `seeds` weight draws) at every linear layer."""
    res = check(source=src, signal=True, dims=dims)
    assert res.ok, res.diagnostics
    ir = res.ir
    pred = {n.id: n.facets["signal"].q for n in ir.nodes() if n.op == "linear" and n.id not in skip}
    meas: dict[str, list[float]] = {k: [] for k in pred}
    for seed in range(seeds):
        m = build_module(ir, seed).eval()
        for name, mod in m.named_modules():
            if isinstance(mod, nn.Linear) and name in pred:
                mod.register_forward_hook(lambda mod, i, o, name=name: meas[name].append(o.double().pow(2).mean().item()))
        g = torch.Generator().manual_seed(1000 + seed)
        with torch.no_grad():
            m(torch.randn(*shape, generator=g))
    return pred, {k: sum(v) / len(v) for k, v in meas.items()}


@pytest.mark.parametrize("act,batch,seeds", [("tanh", 4096, 1), ("sin", 4096, 1), ("relu", 512, 12), ("gelu", 512, 12)])
def test_predicted_variance_matches_the_compiled_mlp(act, batch, seeds):
    """Width 1024, depth 20, variance_preserving: every hidden layer's predicted pre-activation second
    moment is within 10% of the measured one. tanh and sin have a stable fixed point (one draw is
    enough); relu is marginal and gelu unstable (q grows from 2.35 to 32), so those average draws."""
    pred, meas = _measure(_mlp(act), {"B": batch}, (batch, 1024), seeds)
    assert len(pred) == 20
    for k in pred:
        assert meas[k] == pytest.approx(pred[k], rel=0.10), (k, pred[k], meas[k])
    if act == "gelu":                       # the map is not trivially flat: q grows ~14x through depth
        assert pred["h.19.0"] > 10 * pred["h.0.0"]


def test_residual_mlp_prediction():
    src = """
block Res(D: int) {
  input x: [B, D]
  h = linear(x, D) |> relu
  output x + linear(h, D) init { weight: normal(0, 0.3 / sqrt(fan_in)) }
}
model ResMLP(D: int = 1024, depth: int = 20) {
  input x: [B, D]
  init { linear.weight: variance_preserving(act="relu"), linear.bias: zeros }
  output y = x |> repeat depth { Res(D) }
}
"""
    pred, meas = _measure(src, {"B": 512}, (512, 1024), 6, skip=())
    assert len(pred) == 40
    # the residual stream grows: 1 + 0.09·2... per block, about 4.6x over 20 blocks
    assert pred["y.19.h.0"] > 4 * pred["y.0.h.0"]
    for k in pred:
        assert meas[k] == pytest.approx(pred[k], rel=0.10), (k, pred[k], meas[k])


def test_pre_ln_transformer_stack_prediction():
    """Six pre-LN blocks (attention as a mixing average over 64 tokens, GELU MLPs, PyTorch's default
    init): every linear layer's output within 10%, including the attention projections, whose size
    depends on what the tokens share (the covariance k that attention and the residual stream build up)."""
    src = """
import transformer
model Stack(D: int = 256, depth: int = 6, heads: int = 4) {
  input x: [B, T, D]
  output y = x |> repeat depth { TransformerBlock(D, heads, 4 * D) }
}
"""
    pred, meas = _measure(src, {"B": 16, "T": 64}, (16, 64, 256), 8, skip=())
    assert len(pred) == 24
    for k in pred:
        assert meas[k] == pytest.approx(pred[k], rel=0.10), (k, pred[k], meas[k])
    # the attention output grows with depth as the tokens come to share more
    assert pred["y.5.attn.proj"] > 1.5 * pred["y.0.attn.proj"]


def _diag(src: str, **dims):
    res = check(source=src, signal=True, dims=dims)
    return res, [d.code for d in res.diagnostics]


def test_w0601_names_the_first_layer_where_the_signal_leaves():
    src = _mlp("relu", D=256, depth=12).replace('variance_preserving(act="relu")', "normal(0, 2 / sqrt(fan_in))")
    res, codes = _diag(src)
    assert codes == ["W0601"]
    d = res.diagnostics[0]
    assert "explodes" in d.message and "`h.5.0`" in d.message      # q = 4, 8, 16, ... 128: the 6th layer
    assert d.span.line == 5
    res, codes = _diag(_mlp("relu", D=256, depth=12))
    assert codes == []
    small = _mlp("tanh", D=256, depth=12).replace('variance_preserving(act="tanh")', "normal(0, 0.5 / sqrt(fan_in))")
    res, codes = _diag(small)
    assert codes == ["W0601"] and "vanishes" in res.diagnostics[0].message


def test_w0602_xavier_feeding_relu():
    src = _mlp("relu", D=64, depth=2).replace('variance_preserving(act="relu")', "xavier_normal")
    res, codes = _diag(src)
    assert "W0602" in codes
    d = next(d for d in res.diagnostics if d.code == "W0602")
    assert "h.0.0.weight" in d.message and d.secondary
    assert "W0602" not in _diag(src.replace("xavier_normal", 'xavier_normal(gain=gain("relu"))'))[1]
    assert "W0602" not in _diag(_mlp("tanh", D=64, depth=2).replace('variance_preserving(act="tanh")',
                                                                    "xavier_normal"))[1]


def test_w0603_unclipped_shifted_relu_with_a_suggested_clip():
    src = """
model Sparse(D: int = 256) {
  input x: [B, D]
  init { linear.weight: kaiming_normal(nonlinearity="relu") }
  h = linear(x, D) |> shifted_relu(tau=0.5)
  output y = linear(h, D) |> soft_threshold(tau=0.3, clip=1.0)
}
"""
    res, codes = _diag(src)
    assert codes.count("W0603") == 1
    d = next(d for d in res.diagnostics if d.code == "W0603")
    assert "shifted_relu" in d.message and "clip=" in d.help
    clip = float(d.help.split("clip=")[1].split(")")[0])
    # at the critical weight scale (σ_w² = 1/E[φ'²]) the slope of the variance map at the predicted q is 1
    # for the unclipped activation (no stable fixed point) and at most 0.9 with the suggested clip
    from nndsl import ops as O
    from nndsl.signal import expect

    phi = O.get("shifted_relu").scalar
    q = res.ir.node("h.0").facets["signal"].q
    sd = math.sqrt(q)

    def slope(c):
        a = {"tau": 0.5, "clip": c}
        d2 = expect(lambda x: ((phi(x + 1e-4, a) - phi(x - 1e-4, a)) / 2e-4) ** 2, 0, sd)
        m2 = lambda qq: expect(lambda x: phi(x, a) ** 2, 0, math.sqrt(qq))       # noqa: E731
        return (m2(q * 1.01) - m2(q * 0.99)) / (0.02 * q) / d2
    assert slope(None) > 0.99 and slope(clip) <= 0.9 + 1e-6
    assert "W0603" not in _diag(src.replace("shifted_relu(tau=0.5)", f"shifted_relu(tau=0.5, clip={clip:.3g})"))[1]


def test_module_runs_the_sparse_activations_like_their_scalar_form():
    from nndsl import ops as O

    src = """
model A(D: int = 16) {
  input x: [B, D]
  a = shifted_relu(x, tau=0.5)
  b = shifted_relu(x, tau=0.5, clip=1.0)
  c = soft_threshold(x, tau=0.3)
  output d = soft_threshold(x, tau=0.3, clip=0.5) + a + b + c
}
"""
    res = check(source=src, dims={"B": 4})
    assert res.ok
    m = build_module(res.ir, 0)
    x = torch.randn(4, 16)
    ref = sum(torch.tensor([[O.get(op).scalar(v, a) for v in row] for row in x.tolist()])
              for op, a in [("soft_threshold", {"tau": 0.3, "clip": 0.5}), ("shifted_relu", {"tau": 0.5, "clip": None}),
                            ("shifted_relu", {"tau": 0.5, "clip": 1.0}), ("soft_threshold", {"tau": 0.3, "clip": None})])
    assert torch.allclose(m(x), ref, atol=1e-6)


def test_signal_through_norms_pools_concat_dropout():
    src = """
model C(C_: int = 32) {
  input img: [B, C_, 32, 32]
  h = conv2d(img, 64, kernel=3, padding=1) init { weight: kaiming_normal(nonlinearity="relu"), bias: zeros }
  a = relu(h)
  p = avgpool2d(a, kernel=2)
  m = maxpool2d(a, kernel=2)
  c = concat(p, m, axis=1)
  n = batchnorm2d(dropout(c, p=0.5))
  output y = mean(n, axes=[2, 3])
}
"""
    res = check(source=src, signal=True, dims={"B": 8})
    assert res.ok
    s = {n.id: n.facets["signal"] for n in res.ir.nodes() if "signal" in n.facets}
    assert s["h"].q == pytest.approx(2.0, rel=1e-6)              # kaiming relu on unit-variance input
    assert s["a"].q == pytest.approx(1.0, rel=1e-6)
    mu = 1 / math.sqrt(math.pi)                                  # E[relu(z)] for z ~ N(0, 2)
    assert s["a"].mu == pytest.approx(mu, rel=1e-4)
    # the average of 4 positions keeps the shared mean and a quarter of the rest
    assert s["p"].q == pytest.approx(s["a"].k + (1 - s["a"].k) / 4, rel=1e-6)
    assert s["m"].q > s["a"].q                                   # the max of 4 is larger
    assert s["c"].q == pytest.approx((s["p"].q + s["m"].q) / 2, rel=1e-9)
    assert s["n"].q == pytest.approx(1.0)
    # measured on the module (training mode: dropout scales by 2 and batchnorm uses the batch)
    m = build_module(res.ir, 0)
    taps = {}
    for name in ("h",):
        getattr(m, name).register_forward_hook(lambda mod, i, o, name=name: taps.__setitem__(name, o.clone()))
    m(torch.randn(32, 32, 32, 32))
    # zero padding: the border positions see fewer inputs (4% fewer on average at 32x32)
    assert taps["h"].pow(2).mean().item() == pytest.approx(2.0 * (1 - 2 / 96) ** 2, rel=0.05)


def test_cli_check_signal_and_summary_column(tmp_path):
    f = tmp_path / "m.nn"
    f.write_text(_mlp("relu", D=64, depth=3))
    out = subprocess.run([sys.executable, "-m", "nndsl", "check", "--signal", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "q = E[h²]" in out.stdout and "h.2.0" in out.stdout and "chi" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.strip().startswith("h.1.0"))
    assert row.split()[2] == "2" and row.split()[3] == "1"       # q = 2 before each relu, chi = 1 (critical)
    js = subprocess.run([sys.executable, "-m", "nndsl", "check", "--signal", "--format", "json", str(f)],
                        capture_output=True, text=True)
    data = json.loads(js.stdout)
    layers = data["files"][0]["signal"]["layers"]
    assert [r["name"] for r in layers][:2] == ["h.0.0", "h.0.1"] and layers[0]["q"] == pytest.approx(2.0)
    summ = subprocess.run([sys.executable, "-m", "nndsl", "summary", str(f)], capture_output=True, text=True)
    head = summ.stdout.splitlines()[1]
    assert head.split()[-2:] == ["q", "chi"]


def test_signal_pass_covers_every_example():
    """Every shipped example gets a prediction at every float layer output, finite and positive."""
    import glob

    for path in sorted(glob.glob("examples/*.nn")):
        res = check(path, signal=True)
        assert res.ok, path
        rows = res.ir.signal.rows
        assert rows, path
        for nid, op, q, chi, g in rows:
            assert math.isfinite(q) and q >= 0, (path, nid, q)


# -- parametrizations ------------------------------------------------------------------------------
def _mup_mlp(width: int, kind: str = "mup") -> str:
    pz = f"parametrization {kind}(base_width=64)" if kind == "mup" else f"parametrization {kind}"
    return f"""
model M(D: int = {width}) {{
  input x: [B, 32]
  {pz}
  h = linear(x, D) |> relu |> linear(D) |> relu |> linear(D) |> relu
  output y = linear(h, 1)
}}
"""


def test_mup_hidden_adam_lr_is_divided_by_the_width_ratio():
    import nndsl
    import nndsl.optim

    src = _mup_mlp(1024).replace("base_width=64", "base_width=128")
    res = check(source=src)
    assert res.ok, res.diagnostics
    sc = {f"{n.id}.{p.name}": p.facets["scaling"] for n in res.ir.nodes() for p in n.params}
    assert sc["h.0.weight"].cls == "input" and sc["h.2.weight"].cls == "hidden" and sc["y.weight"].cls == "output"
    assert sc["h.2.weight"].lr_adam == 1 / 8 and sc["h.0.weight"].lr_adam == 1.0
    assert sc["h.2.weight"].lr_sgd == 1.0 and sc["y.weight"].lr_sgd == 8.0
    assert res.ir.node("y").facets["multiplier"].input == 1 / 8
    model = nndsl.load(source=src, seed=0)
    groups = nndsl.optim.param_groups(model, lr=1e-3)
    by = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert by[id(model.get_parameter("h.2.weight"))] == pytest.approx(1e-3 / 8)
    assert by[id(model.get_parameter("h.0.weight"))] == pytest.approx(1e-3)
    # the generated source carries the same groups, with torch only
    src_py = nndsl.compile_source(source=src)
    assert "def param_groups(" in src_py and "'h.2.weight': (0.125, 1.0)" in src_py
    ns: dict = {}
    exec(compile(src_py, "<generated>", "exec"), ns)
    m2 = ns["build"](0)
    g2 = ns["param_groups"](m2, 1e-3, "sgd", momentum=0.9)
    assert {g["lr"] for g in g2} == {1e-3, 8e-3} and all(g["momentum"] == 0.9 for g in g2)


def _coord_check(kind: str, widths=(64, 256, 1024, 2048)) -> list[float]:
    """Mean |h| of the hidden layers' outputs after one Adam step, per width."""
    import nndsl
    import nndsl.optim

    out = []
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 32, generator=g)
    t = torch.randn(64, 1, generator=g)
    for w in widths:
        model = nndsl.load(source=_mup_mlp(w, kind), seed=1)
        opt = torch.optim.Adam(nndsl.optim.param_groups(model, lr=1e-2), lr=1e-2)
        loss = ((model(x) - t) ** 2).mean()
        loss.backward()
        opt.step()
        taps = []
        for name in ("h.2",):
            model.get_submodule(name).register_forward_hook(lambda mod, i, o: taps.append(o.abs().mean().item()))
        with torch.no_grad():
            model(x)
        out.append(taps[0])
    return out


def test_mup_coordinate_check_is_flat_across_widths():
    """After one Adam step the hidden activations keep their scale from width 64 to 2048 under μP
    (within 2x); under the standard parametrization they grow with width."""
    mup = _coord_check("mup")
    assert max(mup) / min(mup) < 2, mup
    sp = _coord_check("sp")
    assert sp[-1] / sp[0] > 4, sp


def test_ntk_and_mf_scale_layer_inputs():
    res = check(source=_mup_mlp(256, "ntk"))
    assert res.ok
    n = res.ir.node("h.2")
    assert n.facets["multiplier"].input == pytest.approx(1 / 16)
    assert n.params[0].facets["init"].std == 1.0
    res = check(source=_mup_mlp(256, "mf"))
    assert res.ir.node("y").facets["multiplier"].input == pytest.approx(1 / 256)
    # NTK: N(0,1) weights with the input scaled by 1/√fan_in carry q through (plus the default bias's 1/(3·fan))
    res = check(source=_mup_mlp(256, "ntk"), signal=True)
    q = {n: res.ir.node(n).facets["signal"].q for n in ("h.1", "h.2")}
    assert q["h.2"] == pytest.approx(q["h.1"] + 1 / (3 * 256), rel=1e-9)


def test_w0604_mup_readout():
    tied = open("tests/ui/W0604.nn").read()
    assert [d.code for d in check(source=tied).diagnostics] == ["W0604"]
    untied = tied.replace(", tie=e", "")
    assert [d.code for d in check(source=untied).diagnostics] == []      # the pass scales its input by 1/m
    zero = untied.replace("bias=false)", "bias=false) init { weight: zeros }")
    assert [d.code for d in check(source=zero).diagnostics] == []
