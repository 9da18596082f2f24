"""Init rules: the language (clauses on statements and blocks, most specific wins), the rules against
PyTorch's formulas, the generated module (seeded per parameter name), diagnostics and the summary."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

import nndsl
from nndsl.init import RULES, Shape, calculate_gain, lower

MLP = """model M(D: int = 64, scale: float = 2.0) {
  input x: [B, D]
  init {
    linear.weight: xavier_uniform()
    *.bias: zeros
  }
  h = linear(x, D) init { weight: normal(0, scale / sqrt(fan_in)), bias: constant(0.1) }
  a = relu(h)
  output y = linear(a, 16)
}
"""


def facet(res, path):
    for n in res.ir.nodes():
        for p in n.params:
            f = p.facets.get("init")
            if f is not None and f.path == path:
                return f
    return None


def codes(src):
    return [d.code for d in nndsl.check(source=src).diagnostics]


def test_gains_match_pytorch():
    assert calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert calculate_gain("tanh") == pytest.approx(5 / 3)
    assert calculate_gain("selu") == pytest.approx(3 / 4)
    for nl, p in [("relu", None), ("tanh", None), ("selu", None), ("leaky_relu", 0.2), ("sigmoid", None),
                  ("linear", None), ("conv2d", None)]:
        assert calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))


@pytest.mark.parametrize("rule,args", [
    ("kaiming_normal", {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}),
    ("kaiming_uniform", {"a": 0.0, "mode": "fan_out", "nonlinearity": "tanh"}),
    ("xavier_uniform", {"gain": 1.0}), ("xavier_normal", {"gain": 2.0}),
    ("normal", {"mean": 0.0, "std": 0.02}), ("uniform", {"a": -0.5, "b": 0.5}),
    ("truncated_normal", {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0}),
    ("orthogonal", {"gain": 1.0}),
])
def test_rules_give_the_std_they_promise(rule, args):
    """Predicted std of the entries vs what the generated primitive draws, on a 400 x 1000 weight."""
    s = Shape((400, 1000), 1000, 400)
    prim, pa = lower(rule, args, s)
    want = RULES[rule].std(args, s)
    t = torch.empty(400, 1000)
    g = torch.Generator().manual_seed(0)
    {"normal": lambda: torch.nn.init.normal_(t, pa["mean"], pa["std"], generator=g),
     "uniform": lambda: torch.nn.init.uniform_(t, pa["a"], pa["b"], generator=g),
     "trunc_normal": lambda: torch.nn.init.trunc_normal_(t, pa["mean"], pa["std"], pa["a"], pa["b"], generator=g),
     "orthogonal": lambda: torch.nn.init.orthogonal_(t, pa["gain"], generator=g)}[prim]()
    assert t.std().item() == pytest.approx(want, rel=0.02)
    if rule == "kaiming_normal":
        assert want == pytest.approx(math.sqrt(2) / math.sqrt(1000))
    if rule == "kaiming_uniform":     # PyTorch's bound: gain * sqrt(3 / fan)
        assert pa["b"] == pytest.approx(5 / 3 * math.sqrt(3 / 400))


def test_no_rule_keeps_pytorch_default():
    """PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = 100 -> bound 0.1. The
    draws are PyTorch's own construction's, under a seed made of the build seed and the layer's name."""
    from nndsl.passes.init import salt

    m = nndsl.load(source="model M {\n  input x: [B, 100]\n  output y = linear(x, 2000)\n}\n", seed=0)
    w = m.state_dict()["y.weight"]
    assert w.abs().max().item() <= 0.1 and w.abs().max().item() > 0.0995
    gen = sys.modules[type(m).__module__]
    torch.manual_seed(gen._mix(0, salt("y")))
    ref = torch.nn.Linear(100, 2000)
    assert torch.equal(ref.weight, w) and torch.equal(ref.bias, m.state_dict()["y.bias"])


def test_default_init_seeds_only_the_generators_it_draws_from(monkeypatch):
    """A layer without a rule is seeded through its device's generator: torch.manual_seed would also queue
    a seeding, with a stack trace, of every device type not yet initialised, once per layer (a third of
    building ResNet-50). The draws are the same (test above); the build seeds torch's RNG once."""
    calls = []
    real = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda s: (calls.append(s), real(s))[1])
    m = nndsl.load("examples/resnet18.nn", seed=3)
    assert len(calls) <= 1 and sum(p.numel() for p in m.parameters()) == 11_689_512


def test_every_parameter_is_seeded_by_its_name():
    """Adding, removing or reordering layers leaves every other parameter bit-identical, ruled or not
    (resnet18: convolutions, batch norms with their running statistics, a classifier)."""
    from pathlib import Path

    src = (Path(__file__).parent.parent / "examples" / "mlp.nn").read_text()
    a = nndsl.load(source=MLP, seed=4).state_dict()
    plain = MLP.replace("  init {\n    linear.weight: xavier_uniform()\n    *.bias: zeros\n  }\n", "")
    grown = plain.replace("  a = relu(h)\n", "  extra = linear(x, 32)\n  b = layernorm(extra)\n  a = relu(h)\n")
    p, g = nndsl.load(source=plain, seed=4).state_dict(), nndsl.load(source=grown, seed=4).state_dict()
    assert all(torch.equal(p[k], g[k]) for k in p)                   # default-initialised layers too
    assert torch.equal(a["h.weight"], p["h.weight"])                 # the statement's rule in both
    assert not torch.equal(p["y.weight"], nndsl.load(source=plain, seed=5).state_dict()["y.weight"])
    r1, r2 = nndsl.load(source=src, seed=9), nndsl.load(source=src, seed=9)
    assert all(torch.equal(x, y) for x, y in zip(r1.state_dict().values(), r2.state_dict().values()))


def test_build_matches_construction_statistics_and_a_bare_class_is_initialised():
    """`build` constructs without PyTorch's draws and draws each parameter once; the class alone still
    initialises as PyTorch does. Norm layers get ones and zeros, running statistics their defaults."""
    from pathlib import Path

    m = nndsl.load(Path(__file__).parent.parent / "examples" / "resnet18.nn", seed=1)
    sd = m.state_dict()
    assert torch.all(sd["bn1.weight"] == 1) and torch.all(sd["bn1.bias"] == 0)
    assert torch.all(sd["bn1.running_var"] == 1) and torch.all(sd["bn1.running_mean"] == 0)
    w = sd["conv1.weight"]                                          # kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in))
    assert w.abs().max().item() <= 1 / math.sqrt(3 * 49) and w.std().item() == pytest.approx(
        1 / math.sqrt(3 * 3 * 49), rel=0.05)
    bare = type(m)()
    assert bare.state_dict()["conv1.weight"].std().item() == pytest.approx(w.std().item(), rel=0.05)


def test_statement_and_block_rules_and_what_the_module_gets():
    res = nndsl.check(source=MLP)
    assert res.ok, res.diagnostics
    h = facet(res, "h.weight")
    assert h.rule == "normal" and h.args == {"mean": 0, "std": pytest.approx(2 / 8)} and h.key == "weight"
    assert facet(res, "h.bias").rule == "constant"                    # the statement beats `*.bias`
    assert facet(res, "y.weight").rule == "xavier_uniform"            # the block rule
    assert facet(res, "y.bias").rule == "zeros"
    sd = nndsl.load(source=MLP, seed=3).state_dict()
    assert torch.all(sd["h.bias"] == 0.1) and torch.all(sd["y.bias"] == 0)
    bound = math.sqrt(6 / (64 + 16))
    assert sd["y.weight"].abs().max().item() <= bound


def test_most_specific_wins():
    src = """block Inner() {
  input x: [B, D]
  init { weight: constant(3) }
  output o = linear(x, D)
}
model M(D: int = 8) {
  input x: [B, D]
  init {
    *: constant(1)
    linear.*: constant(2)
    *.weight: constant(4)
    linear.weight: constant(5)
    fc.weight: constant(6)
    weight: constant(7)
  }
  a = linear(x, D)
  fc = linear(a, D)
  inner = Inner(fc)
  output y = linear(inner, D) init { weight: constant(9) }
}
"""
    res = nndsl.check(source=src)
    assert res.ok, res.diagnostics
    got = {p: facet(res, p).args["value"] for p in ("a.weight", "a.bias", "fc.weight", "inner.o.weight", "y.weight")}
    # a.weight: `linear.weight` (op and parameter) beats `weight`/`*.weight` declared later; fc: its own name;
    # inner: the innermost block; y: the statement; a.bias: `linear.*` beats `*`
    assert got == {"a.weight": 5, "a.bias": 2, "fc.weight": 6, "inner.o.weight": 3, "y.weight": 9}


def test_same_seed_same_weights_and_other_changes_leave_a_parameter_alone():
    a = nndsl.load(source=MLP, seed=11).state_dict()
    b = nndsl.load(source=MLP, seed=11).state_dict()
    c = nndsl.load(source=MLP, seed=12).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["h.weight"], c["h.weight"])
    grown = MLP.replace("  a = relu(h)\n", "  extra = linear(x, 32)\n  a = relu(h)\n")
    d = nndsl.load(source=grown, seed=11).state_dict()
    assert torch.equal(a["h.weight"], d["h.weight"]) and torch.equal(a["y.weight"], d["y.weight"])


def test_identity_init_computes_the_identity():
    src = """model Id(C: int = 6) {
  input x: [B, C, H, W]
  c = conv2d(x, C, kernel=3, padding=1) init { weight: identity(), bias: zeros }
  output y = linear(c, W) init { weight: identity(gain=2), bias: zeros }
}
"""
    m = nndsl.load(source=src, seed=0, W=5)
    x = torch.randn(2, 6, 4, 5)
    assert torch.allclose(m(x), 2 * x, atol=1e-6)


def test_rule_arguments_use_block_parameters_fans_and_gain():
    src = """block L(k: float) {
  input x: [B, D]
  output o = linear(x, 50) init { weight: normal(0, k * gain("tanh") / sqrt(fan_in)) }
}
model M {
  input x: [B, 200]
  output y = L(x, k=3.0)
}
"""
    res = nndsl.check(source=src)
    assert res.ok, res.diagnostics
    assert facet(res, "y.o.weight").std == pytest.approx(3.0 * 5 / 3 / math.sqrt(200))


@pytest.mark.parametrize("clause,code,text", [
    ("weight: nromal(0, 1)", "E0501", "did you mean `normal`"),
    ("weight: 3", "E0501", "a rule name or a call"),
    ("weight: normal(0, 1, 2)", "E0502", "takes 2 arguments"),
    ("weight: normal(sd=1)", "E0502", "no argument `sd`"),
    ("weight: kaiming_normal(nonlinearity=2)", "E0502", "must be a str"),
    ("weight: kaiming_normal(nonlinearity=\"relu6\")", "E0503", "unknown nonlinearity"),
    ("weight: normal(0, -1)", "E0503", "at least 0"),
    ("bias: orthogonal()", "E0503", "at least 2 axes"),
    ("weight: constant()", "E0502", "needs `value`"),
    ("weight: normal(0, 1 / sqrt(fanin))", "E0101", "unknown name `fanin`"),
])
def test_rule_errors_point_at_the_rule(clause, code, text):
    src = f"model M {{\n  input x: [B, 8]\n  output y = linear(x, 4) init {{ {clause} }}\n}}\n"
    res = nndsl.check(source=src)
    errs = [d for d in res.diagnostics if d.is_error]
    assert [d.code for d in errs] == [code], res.diagnostics
    assert text in errs[0].message + (errs[0].help or "")
    assert errs[0].span.line == 3 and errs[0].span.col > src.splitlines()[2].index("init")


def test_a_key_that_matches_nothing_is_a_warning():
    assert "W0501" in codes("model M {\n  input x: [B, 8]\n  output y = linear(x, 4) init { weigth: zeros }\n}\n")
    assert "W0501" in codes("model M {\n  input x: [B, 8]\n  init { lienar.weight: zeros }\n  output y = linear(x, 4)\n}\n")
    assert "W0501" not in codes(MLP)


def test_init_is_still_a_name_and_clauses_take_newlines():
    src = """model M {
  input x: [B, 8]
  init = linear(x, 8) init {
    weight: zeros
    bias: ones
  }
  output y = relu(init)
}
"""
    res = nndsl.check(source=src)
    assert res.ok, res.diagnostics
    assert facet(res, "init.bias").rule == "ones"


def test_free_parameter_value_and_pipelines():
    src = """model M(D: int = 8) {
  input x: [B, T, D]
  pos = param([T, D]) init { value: normal(0, 0.02) }
  h = x + pos |> linear(D) |> relu init { weight: zeros, bias: zeros }
  output y = h
}
"""
    res = nndsl.check(source=src, T=4)
    assert res.ok and not res.diagnostics, res.diagnostics
    assert facet(res, "pos").rule == "normal" and facet(res, "h.0.weight").rule == "zeros"
    sd = nndsl.load(source=src, seed=0, T=4).state_dict()
    assert torch.count_nonzero(sd["h.0.weight"]) == 0 and sd["pos"].std().item() == pytest.approx(0.02, rel=0.5)


def test_summary_and_compiled_source_carry_the_rules(tmp_path):
    f = tmp_path / "m.nn"
    f.write_text(MLP)
    r = subprocess.run([sys.executable, "-m", "nndsl.cli", "summary", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "h.weight   normal(mean=0, std=0.25)" in r.stdout and "m.nn:7 [weight]" in r.stdout
    assert "xavier_uniform(gain=1)" in r.stdout and "m.nn:4 [linear.weight]" in r.stdout
    out = tmp_path / "m.py"
    r = subprocess.run([sys.executable, "-m", "nndsl.cli", "compile", str(f), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import m, torch; a = m.build(5).state_dict(); "
            "b = m.build(5).state_dict(); assert all(torch.equal(a[k], b[k]) for k in a); "
            "assert torch.all(a['h.bias'] == 0.1); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.stdout.strip() == "ok", r.stderr
    js = subprocess.run([sys.executable, "-m", "nndsl.cli", "summary", str(f), "--json"], capture_output=True, text=True)
    assert '"rule": "xavier_uniform"' in js.stdout


def test_unparse_keeps_init_clauses():
    from nndsl.syntax.parser import parse_text
    from nndsl.syntax.unparse import unparse

    text = unparse(parse_text(MLP))
    assert "init { linear.weight: xavier_uniform(), *.bias: zeros }" in text
    assert "init { weight: normal(0, scale / sqrt(fan_in)), bias: constant(0.1) }" in text
    assert unparse(parse_text(text)) == text


def test_every_activation_scalar_matches_torch():
    """The scalar form of each activation (what init rules and signal analysis integrate) is the op."""
    from nndsl import ops as O

    names = [n for n in O.all_names() if O.get(n).scalar is not None]
    assert {"relu", "tanh", "gelu", "sin", "silu", "sigmoid", "leaky_relu", "elu", "mish"} <= set(names)
    x = torch.linspace(-6, 6, 97, dtype=torch.float64)
    given = {"clamp": {"min": -1.0, "max": 2.0}, "shifted_relu": {"tau": 0.5}, "soft_threshold": {"tau": 0.5, "clip": 1.5}}
    for n in names:
        base = O.get(n).name
        extra = "".join(f", {k}={v}" for k, v in given.get(base, {}).items())
        m = nndsl.load(source=f"model T {{\n  input x: [97] float64\n  output {n}(x{extra})\n}}\n")
        od = O.get(n)
        attrs = {a.name: a.default for a in od.attrs} | given.get(base, {})
        want = m(x)
        got = torch.tensor([od.scalar(float(v), attrs) for v in x], dtype=torch.float64)
        assert torch.allclose(got, want, atol=1e-9), n


def test_variance_preserving_gain_by_quadrature():
    from nndsl.init import gaussian_mean

    assert gaussian_mean(lambda z: z * z) == pytest.approx(1.0, abs=1e-12)
    s = Shape((10, 100), 100, 10)
    relu = RULES["variance_preserving"].std({"act": "relu", "mode": "fan_in"}, s)
    assert relu == pytest.approx(RULES["kaiming_normal"].std({"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}, s))
    z = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m2 = (torch.tanh(z) ** 2).mean().item()
    tanh = RULES["variance_preserving"].std({"act": "tanh", "mode": "fan_in"}, s)
    assert tanh == pytest.approx(1 / math.sqrt(100 * m2), rel=2e-3)
    assert "E0503" in codes("model M {\n  input x: [B, 8]\n  output y = linear(x, 4) init { weight: "
                            "variance_preserving(act=\"softmax\") }\n}\n")


# gelu is left out: at width 1024 its measured q drifts above the mean-field value late in depth (1.53 vs
# 1.01 at layer 20, averaged over three draws), which the signal-propagation pass will have to model
@pytest.mark.parametrize("act", ["relu", "tanh", "sin"])
def test_variance_preserving_matches_the_mean_field_prediction(act):
    """Width 1024, depth 20, batch 1024: each layer's pre-activation second moment q_l, averaged over three
    weight draws, is within 10% of the mean-field map q_{l+1} = σ_w²·fan_in·E[φ(√q_l z)²]
    (q_1 = σ_w²·fan_in·E[x²], x the output of the activation on a unit Gaussian), whose fixed point the
    rule puts at 1."""
    from nndsl.init import activation, gaussian_mean

    src = f"""model Deep(W: int = 1024) {{
  input x: [B, W]
  init {{ linear.weight: variance_preserving(act="{act}"), linear.bias: zeros }}
  output y = x |> repeat 20 {{ linear(W) |> {act} }}
}}
"""
    res = nndsl.check(source=src)
    sw2_fan = facet(res, "y.0.0.weight").std ** 2 * 1024
    phi = activation(act)
    torch_phi = {"relu": torch.relu, "tanh": torch.tanh, "sin": torch.sin}[act]
    x = torch_phi(torch.randn(1024, 1024, generator=torch.Generator().manual_seed(1)))   # a layer's output
    q, predicted = sw2_fan * x.pow(2).mean().item(), []
    for _ in range(20):
        predicted.append(q)
        q = sw2_fan * gaussian_mean(lambda z, q=q: phi(math.sqrt(q) * z) ** 2)
    runs = []
    for seed in range(3):             # finite width makes each draw wander around the mean-field value
        m = nndsl.load(source=src, seed=seed)
        seen: list[float] = []
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out.pow(2).mean().item()))
        with torch.no_grad():
            m(x)
        runs.append(seen)
    measured = [sum(v) / len(v) for v in zip(*runs)]
    assert len(measured) == 20
    worst = max(range(20), key=lambda i: abs(measured[i] / predicted[i] - 1))
    assert abs(measured[worst] / predicted[worst] - 1) < 0.1, (worst, measured[worst], predicted[worst])
    assert abs(predicted[0] - 1) < 0.01 and abs(predicted[-1] - 1) < 0.05     # the fixed point q* = 1


# -- structural rules: ZerO, convolution-aware, Fixup, LoRA, frozen, IDInit --------------------------

def test_zero_one_is_deterministic_and_matches_the_paper():
    """ZerO: identity for square and shrinking layers, c·Hadamard for growing ones (c = 2^-(k-1)/2); the
    same weights for every seed; a kernel gets the matrix at its centre tap."""
    src = """model M {
  input x: [B, 8]
  init { weight: ZerO }
  a = linear(x, 8)
  b = linear(a, 4)
  c = linear(b, 12)
  output y = conv1d(c |> reshape([B, 12, 1]), 12, kernel=3, padding=1)
}
"""
    sds = [nndsl.load(source=src, seed=s).state_dict() for s in (0, 1, 2)]
    for k in ("a.weight", "b.weight", "c.weight", "y.weight"):
        assert all(torch.equal(sds[0][k], sd[k]) for sd in sds[1:]), k
    sd = sds[0]
    assert torch.equal(sd["a.weight"], torch.eye(8)) and torch.equal(sd["b.weight"], torch.eye(4, 8))
    c = sd["c.weight"]                                   # 12 out of 4: k = 4, c = 2^-1.5
    h = torch.tensor([[(-1) ** bin(i & j).count("1") for j in range(4)] for i in range(12)], dtype=torch.float32)
    assert torch.allclose(c, h * 2 ** -1.5)
    y = sd["y.weight"]
    assert torch.equal(y[:, :, 1], torch.eye(12)) and torch.all(y[:, :, [0, 2]] == 0)
    res = nndsl.check(source=src)
    f = facet(res, "c.weight")                           # the moments the signal pass reads are the real ones
    assert f.m2 == pytest.approx((c ** 2).mean().item()) and f.mean == pytest.approx(c.mean().item(), abs=1e-7)


def test_conv_orthogonal_has_he_variance_and_orthogonal_fourier_filters():
    src = """model M {
  input x: [B, 16, 8, 8]
  output y = conv2d(x, 8, kernel=3, padding=1) init { weight: conv_orthogonal(eps_std=0) }
}"""
    w = nndsl.load(source=src, seed=3).state_dict()["y.weight"].double()
    assert w.std(correction=0).item() == pytest.approx(math.sqrt(2 / (16 * 9)), rel=1e-6)

    def coherence(w):          # mean |cosine| between a filter's input channels in Fourier space, per block
        F = torch.fft.rfftn(w, dim=(2, 3)).reshape(w.shape[0], w.shape[1], -1)
        F = F / F.norm(dim=-1, keepdim=True)
        G = (F @ F.conj().transpose(-1, -2)).abs()
        b = F.shape[-1]
        mask = torch.zeros(w.shape[1], w.shape[1], dtype=torch.bool)
        for s in range(0, w.shape[1], b):
            mask[s:s + b, s:s + b] = True
        return G[:, mask & ~torch.eye(w.shape[1], dtype=torch.bool)].mean().item()

    g = torch.Generator().manual_seed(0)
    assert coherence(w) < 0.6 * coherence(torch.randn(w.shape, generator=g, dtype=torch.float64))
    assert codes("model M {\n  input x: [B, 4]\n  output y = linear(x, 4) init { weight: conv_orthogonal }\n}\n") \
        == ["E0503"]


def test_fixup_resnet110_branch_scale_and_zero_logits():
    """Fixup on ResNet-110 (54 branches of 2 convolutions): first convolutions He-scaled by
    54^(-1/2) = 0.1361, second ones and the classifier zero, so the logits are exactly 0 at init."""
    from pathlib import Path

    from nndsl.init import fixup_scale

    assert fixup_scale(54, 2) == pytest.approx(0.1361, abs=5e-5)
    ex = Path(__file__).parent.parent / "examples" / "fixup_resnet110.nn"
    res = nndsl.check(ex, signal=True)
    assert res.ok and not [d for d in res.diagnostics if d.code == "W0601"]
    assert res.ir.topology.branches == 54
    f = facet(res, "stage2.3.conv1.weight")
    assert f.std == pytest.approx(math.sqrt(2 / (32 * 9)) * 0.13608, rel=1e-4)
    assert facet(res, "stage2.3.conv2.weight").std == 0 and facet(res, "logits.weight").std == 0
    assert facet(res, "stage2.0.downsample.weight").std == pytest.approx(math.sqrt(2 / 16))   # shortcut: He
    m = nndsl.load(ex, seed=0)
    w = m.state_dict()["stage3.5.conv1.weight"]
    assert w.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)) * 0.13608, rel=0.05)
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 32))
    assert torch.equal(out, torch.zeros(2, 10))


def test_depth_branches_width_in_rule_arguments():
    """GPT-2's residual projections, N(0, 0.02/sqrt(2·n_layer)), written with `branches` (24 in GPT-2
    small); `depth` counts weight layers on the longest path (ResNet-18: 18); `width` the model's width."""
    src = """import transformer
model G(D: int = 64) {
  input tokens: [B, T] int64
  init {
    proj.weight: normal(0, 0.02 / sqrt(branches))
    fc.weight: normal(0, 1 / sqrt(width))
    lm_head.weight: constant(depth)
  }
  output logits = GPT2(tokens, 100, 16, D, 3, 4)
}
"""
    res = nndsl.check(source=src)
    assert res.ok, res.diagnostics
    stds = {f.path: f.std for n in res.ir.nodes() for p in n.params if (f := p.facets.get("init"))}
    projs = [v for k, v in stds.items() if k.endswith("proj.weight")]
    assert projs and all(v == pytest.approx(0.02 / math.sqrt(6)) for v in projs)
    assert all(v == pytest.approx(1 / 8) for k, v in stds.items() if k.endswith("fc.weight"))
    r18 = nndsl.check(__import__("pathlib").Path(__file__).parent.parent / "examples" / "resnet18.nn").ir
    from nndsl.passes.topology import topology

    assert topology(r18).depth == 18 and topology(r18).branches == 8
    assert codes("model M(n: int = 3) {\n  input x: [B, 4]\n  output y = linear(x, 4) init { weight: "
                 "normal(0, 1 / width) }\n}\n") == ["E0101"]


def test_lora_adapter_starts_as_the_frozen_base():
    src = """model M(D: int = 32, r: int = 4) {
  input x: [B, D]
  base = linear(x, D) init { weight: frozen, bias: frozen(zeros) }
  down = linear(x, r, bias=false) init { weight: lora("A") }
  up = linear(down, D, bias=false) init { weight: lora("B") }
  output y = base + up * 2.0
}
"""
    m = nndsl.load(source=src, seed=0)
    sd = m.state_dict()
    assert torch.all(sd["up.weight"] == 0) and sd["down.weight"].abs().max().item() <= 1 / math.sqrt(32)
    assert sd["down.weight"].std().item() == pytest.approx(1 / math.sqrt(3 * 32), rel=0.1)
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen == {"base.weight", "base.bias"}
    x = torch.randn(3, 32)
    with torch.no_grad():
        assert torch.equal(m(x), m.base(x))
    from nndsl.optim import param_groups

    groups = param_groups(m, lr=1e-3)
    assert sum(len(g["params"]) for g in groups) == 2
    gen = sys.modules[type(m).__module__]
    assert sum(len(g["params"]) for g in gen.param_groups(m, 1e-3)) == 2
    assert codes(src.replace('lora("B")', 'lora("C")')) == ["E0503"]
    assert codes(src.replace("frozen(zeros)", "frozen(zeros, ones)")) == ["E0502"]


def test_idinit_residual_block_is_the_identity_at_init():
    """IDInit: the stem's layers start as (padded) identities and its last layer at zero, so a residual
    block computes its input exactly; a widening-then-narrowing stem of padded identities passes a
    non-negative input through unchanged."""
    src = """model M(D: int = 16) {
  input x: [B, D]
  init { *.bias: zeros }
  h = linear(x, 2 * D) |> relu |> linear(D) init { weight: identity }
  u = linear(x, 2 * D) init { weight: identity }
  v = linear(relu(u), D) init { weight: zeros }
  r = x + v
  output y = h + r
}
"""
    res = nndsl.check(source=src)
    assert res.ok, res.diagnostics
    m = nndsl.load(source=src, seed=0)
    x = torch.rand(5, 16)
    with torch.no_grad():
        assert torch.equal(m(x), 2 * x)


# -- `act` definitions ---------------------------------------------------------------------------------

ACTS = '''act swishy(x) = x * sigmoid(1.702 * x)
act swish(x, beta: float = 1.0) = x * sigmoid(beta * x)
act mixed(x) = swish(x, beta=2) + swishy(x) - 0.5 * x

model M(D: int = 64) {
  input x: [B, D]
  h = linear(x, D) init { weight: normal(0, 1 / sqrt(fan_in)), bias: zeros }
  a = swishy(h)
  b = linear(a, D) |> swish(beta=3.0) init { weight: variance_preserving(act="swishy"), bias: zeros }
  output y = mixed(b)
}
'''


def test_act_definitions_compile_to_the_torch_expression():
    m = nndsl.load(source=ACTS, seed=0)
    sd = m.state_dict()
    x = torch.randn(4, 64)
    h = x @ sd["h.weight"].T + sd["h.bias"]
    b = (h * torch.sigmoid(1.702 * h)) @ sd["b.0.weight"].T + sd["b.0.bias"]
    b = b * torch.sigmoid(3 * b)
    ref = b * torch.sigmoid(2 * b) + b * torch.sigmoid(1.702 * b) - 0.5 * b
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref)
    src = nndsl.compile_source(source=ACTS)
    assert "(h * torch.sigmoid((1.702 * h)))" in src


def test_variance_preserving_integrates_a_user_act():
    """The gain comes from the act's own scalar form: 1 / E[swishy(z)²] by quadrature, against a
    Monte Carlo estimate with torch."""
    res = nndsl.check(source=ACTS, signal=True)
    assert res.ok, res.diagnostics
    z = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m2 = (z * torch.sigmoid(1.702 * z)).pow(2).mean().item()
    assert facet(res, "b.0.weight").std == pytest.approx(1 / math.sqrt(64 * m2), rel=2e-3)
    q = {r[0]: r[2] for r in res.ir.signal.rows}
    assert q["h"] == pytest.approx(1.0) and q["b.0"] == pytest.approx(1.0, rel=1e-3)   # unit in, unit out


@pytest.mark.parametrize("body,code", [
    ("x * softmax(x)", "E0119"),
    ("x[0]", "E0119"),
    ("x * y", "E0101"),
    ("loop(x)", "E0116"),
    ("x * 1e999", "E0119"),
])
def test_act_errors(body, code):
    src = f"act loop(x) = {body}\nmodel M {{\n  input x: [B, 4]\n  output y = loop(x)\n}}\n"
    assert code in codes(src)


def test_fn_refuses_a_hand_written_expression():
    """`fn` is what a call of an act becomes; its tree is checked, so nothing from a spec reaches the
    generated source except numbers, four operators and known function names."""
    bad = '["b", "); import os; (", ["x"], ["x"]]'
    assert codes(f"model M {{\n  input x: [B, 4]\n  output y = fn(x, expr={bad})\n}}\n") == ["E0119"]


# -- LSUV ---------------------------------------------------------------------------------------------

def test_lsuv_brings_every_layer_to_unit_variance():
    from pathlib import Path

    from nndsl.init import lsuv

    ex = Path(__file__).parent.parent / "examples"
    m = nndsl.load(ex / "resnet18.nn", seed=0)
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    seen = []
    fits = lsuv(m, x, tol=0.05, progress=lambda i, n, f: seen.append((i, n)))
    assert len(fits) == 21 and seen[-1] == (21, 21)              # 20 convolutions and the classifier
    assert all(abs(f.after - 1) < 0.05 for f in fits), [(f.name, f.after) for f in fits]
    assert any(abs(f.before - 1) > 0.3 for f in fits)            # it had work to do
    w = m.state_dict()["layer1.0.conv1.weight"].flatten(1)       # orthonormal rows, then one scale
    gram = w @ w.T
    assert torch.allclose(gram, gram[0, 0] * torch.eye(64), atol=1e-4 * gram[0, 0].item())
    # zero-initialised layers keep their zero (Fixup's second convolutions and classifier)
    f = nndsl.load(ex / "fixup_resnet110.nn", seed=0)
    fits = {x.name: x for x in lsuv(f, torch.randn(2, 3, 32, 32))}
    assert fits["logits"].skipped and torch.all(f.state_dict()["logits.weight"] == 0)
    assert all(abs(x.after - 1) < 0.1 for x in fits.values() if not x.skipped)


def test_lsuv_command_with_npy_and_pt_batches(tmp_path):
    import numpy as np

    from pathlib import Path

    ex = Path(__file__).parent.parent / "examples" / "mlp.nn"
    np.save(tmp_path / "b.npy", np.random.default_rng(0).standard_normal((32, 784)).astype("float32"))
    torch.save(torch.randn(32, 784), tmp_path / "b.pt")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "nndsl", "lsuv", str(ex), *map(str, args)],
                              capture_output=True, text=True, timeout=120)

    for b in ("b.npy", "b.pt"):
        r = run("--batch", tmp_path / b, "-o", tmp_path / "w.pt", "--tol", "0.02")
        assert r.returncode == 0, r.stderr
        assert "LSUV" in r.stderr and "net.head" in r.stderr
        sd = torch.load(tmp_path / "w.pt", weights_only=True)
        m = nndsl.load(ex)
        m.load_state_dict(sd)
        assert "net.layers.0.0.weight" in sd
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "rank.npy", np.zeros((2, 3, 784), dtype="float32"))
    for bad in ("obj.npy", "rank.npy", "missing.pt"):
        r = run("--batch", tmp_path / bad, "-o", tmp_path / "x.pt")
        assert r.returncode == 1 and "E0404" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x.pt").exists()


def test_an_act_that_expands_exponentially_is_refused_early():
    """Inlining is bounded before the work: a chain of acts each doubling its body, and one nesting
    itself, are E0112 in well under a second each, not 2^39 terms."""
    import time

    doubling = "act a0(x) = x + x\n" + "".join(f"act a{i}(x) = a{i - 1}(x) * a{i - 1}(x)\n" for i in range(1, 40))
    nesting = "act b0(x) = x * x * x * x\n" + "".join(f"act b{i}(x) = b{i - 1}(b{i - 1}(x))\n" for i in range(1, 40))
    for defs, call in ((doubling, "a39(h)"), (nesting, "b39(h)")):
        t = time.perf_counter()
        got = codes(f"{defs}model M {{\n  input h: [B, 4]\n  output y = {call}\n}}\n")
        assert "E0112" in got and time.perf_counter() - t < 10
