"""Examples end to end: golden parameter counts, numerical equivalence with hand-written PyTorch,
compiled source == nndsl.load, seeds, torchvision names, torch.compile and torch.export."""
from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

import nndsl
import references as R
from conftest import EXAMPLES

GOLDEN = {"resnet18": 11_689_512, "resnet50": 25_557_032, "vit_b16": 86_567_656, "gpt2_small": 124_439_808,
          "mobilenet_v3_small": 2_542_856, "efficientnet_b0": 5_288_548}
INPUTS = {
    "mlp": lambda: torch.randn(3, 784),
    "resnet18": lambda: torch.randn(2, 3, 64, 64),
    "resnet50": lambda: torch.randn(1, 3, 224, 224),
    "vit_b16": lambda: torch.randn(1, 3, 224, 224),
    "gpt2_small": lambda: torch.randint(0, 50257, (2, 12)),
    "unet": lambda: torch.randn(1, 3, 256, 256),
    "mobilenet_v3_small": lambda: torch.randn(2, 3, 96, 96),
    "efficientnet_b0": lambda: torch.randn(1, 3, 64, 64),
}
ALL = sorted(INPUTS)


def nparams(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def models():
    return {name: nndsl.load(EXAMPLES / f"{name}.nn", seed=0).eval() for name in ALL}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_parameter_counts(name, models):
    res = nndsl.check(EXAMPLES / f"{name}.nn")
    assert res.ok
    from nndsl.passes.ensures import param_count

    assert param_count(res.ir) == GOLDEN[name]
    assert nparams(models[name]) == GOLDEN[name]


def test_reference_counts_agree():
    assert nparams(R.resnet18()) == GOLDEN["resnet18"]
    assert nparams(R.resnet50()) == GOLDEN["resnet50"]
    assert nparams(R.GPT2()) == GOLDEN["gpt2_small"]


@pytest.mark.parametrize("name,ref", [("resnet18", R.resnet18), ("resnet50", R.resnet50)])
def test_resnet_loads_torchvision_state_dict_strictly(name, ref):
    m = nndsl.load(EXAMPLES / f"{name}.nn", seed=0).eval()
    torch.manual_seed(1)
    tv = ref().eval()
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in tv.state_dict().items()}
    m.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 96) if name == "resnet18" else torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(m(x), tv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,ref", [("mobilenet_v3_small", R.MobileNetV3Small),
                                      ("efficientnet_b0", R.EfficientNetB0)])
def test_mobile_nets_load_the_reference_state_dict_strictly_and_agree(name, ref):
    """References written after torchvision's code. Optional layers are `if` stages, so the indices after
    them shift as in torchvision's nn.Sequential (`features.1.block.0` of MobileNetV3 is a depthwise conv,
    `features.2.block.0` an expansion conv); EfficientNet's stages are `(repeat N { ... })`, numbered even
    when N is 1 (`features.1.0`)."""
    m = nndsl.load(EXAMPLES / f"{name}.nn", seed=0).eval()
    torch.manual_seed(1)
    r = ref().eval()
    with torch.no_grad():            # batchnorm statistics that are not the identity
        for k, v in r.state_dict().items():
            if v.is_floating_point():
                v.copy_(torch.rand_like(v) + 0.5 if "running_var" in k else torch.randn_like(v) * 0.2)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in r.state_dict().items()}
    if name == "mobilenet_v3_small":
        assert m.get_submodule("features.1.block.0.0").groups == 16
        assert m.get_submodule("features.2.block.0.0").kernel_size == (1, 1)
    else:
        assert m.get_submodule("features.1.0.block.0.0").groups == 32
    m.load_state_dict(r.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(m(x), r(x), rtol=1e-5, atol=1e-5)
    assert nparams(r) == GOLDEN[name]


def _copy_by_order(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy parameters/buffers position by position (shapes must agree): the spec and the reference
    declare layers in the same order but under different names."""
    s, d = list(src.state_dict().values()), dst.state_dict()
    assert len(s) == len(d)
    new = {}
    for (k, v), w in zip(d.items(), s):
        assert v.shape == w.shape, (k, v.shape, w.shape)
        new[k] = w
    dst.load_state_dict(new, strict=True)


def test_mlp_matches_hand_written():
    m = nndsl.load(EXAMPLES / "mlp.nn", seed=0).eval()
    ref = R.MLP().eval()
    _copy_by_order(ref, m)
    x = torch.randn(5, 784)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-5)


RESIDUAL = """
import resnet
model Res {
  input x: [B, 64, H, W]
  output y = BasicBlock(x, 64, 128, stride=2)
}
"""

TRANSFORMER = """
import transformer
model Blk {
  input x: [B, T, 64]
  output y = TransformerBlock(x, 64, 4, 256, causal=true)
}
"""


def test_residual_block_matches_hand_written():
    m = nndsl.load(source=RESIDUAL, seed=0).eval()
    down = torch.nn.Sequential(torch.nn.Conv2d(64, 128, 1, 2, bias=False), torch.nn.BatchNorm2d(128))
    ref = R.BasicBlock(64, 128, 2, down).eval()
    assert list(m.state_dict()) == ["y." + k for k in ref.state_dict()]
    _copy_by_order(ref, m)
    for mod in (m, ref):  # non-trivial running statistics
        for buf in mod.buffers():
            if buf.dtype.is_floating_point:
                buf.uniform_(0.5, 1.5)
        _copy_by_order(ref, m)
    x = torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-5)


def test_transformer_block_matches_hand_written():
    m = nndsl.load(source=TRANSFORMER, seed=0).eval()
    ref = R.TransformerBlock(64, 4, 256, causal=True).eval()
    _copy_by_order(ref, m)
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-5)


def test_gpt2_matches_hand_written():
    ref = R.GPT2().eval()
    m = nndsl.load(EXAMPLES / "gpt2_small.nn", seed=0).eval()
    # same order of declaration except the tied head, which shares wte's storage in both
    src = {k: v for k, v in ref.state_dict().items() if k != "lm_head.weight"}
    dst_keys = [k for k in m.state_dict() if not k.endswith("lm_head.weight")]
    m.load_state_dict({**dict(zip(dst_keys, src.values())),
                       "logits.lm_head.weight": ref.state_dict()["wte.weight"]}, strict=True)
    assert m.logits.lm_head.weight.data_ptr() == m.logits.wte.weight.data_ptr()
    x = torch.randint(0, 50257, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-4)


def _import_source(src: str, name: str):
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    exec(compile(src, f"<{name}>", "exec"), mod.__dict__)
    sys.modules[name] = mod
    return mod


@pytest.mark.parametrize("name", ALL)
def test_compiled_source_equals_load(name, models, tmp_path):
    src = nndsl.compile_source(EXAMPLES / f"{name}.nn")
    out = tmp_path / f"{name}_gen.py"
    out.write_text(src)
    spec = importlib.util.spec_from_file_location(f"gen_{name}", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    compiled = mod.build(seed=0).eval()
    loaded = models[name]
    assert list(compiled.state_dict()) == list(loaded.state_dict())
    for (k, a), b in zip(loaded.state_dict().items(), compiled.state_dict().values()):
        assert torch.equal(a, b), k
    x = INPUTS[name]()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), loaded(x), rtol=1e-5, atol=1e-5)
    assert "import nndsl" not in src and "from nndsl" not in src  # standalone: torch only


def test_same_seed_same_weights_different_seed_differs():
    a = nndsl.load(EXAMPLES / "resnet18.nn", seed=7).state_dict()
    b = nndsl.load(EXAMPLES / "resnet18.nn", seed=7).state_dict()
    c = nndsl.load(EXAMPLES / "resnet18.nn", seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_load_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    nndsl.load(EXAMPLES / "mlp.nn", seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", ALL)
def test_torch_compile_fullgraph_no_graph_breaks(name, models):
    torch._dynamo.reset()
    m = models[name]
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    x = INPUTS[name]()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), m(x), rtol=1e-4, atol=1e-4)


def test_torch_compile_inductor_mlp(models):
    torch._dynamo.reset()
    m = models["mlp"]
    compiled = torch.compile(m, fullgraph=True)
    x = INPUTS["mlp"]()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), m(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["mlp", "resnet18", "gpt2_small"])
def test_torch_export(name, models):
    m = models[name]
    x = INPUTS[name]()
    ep = torch.export.export(m, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-5, atol=1e-5)


def test_train_step_runs_backward(models):
    m = nndsl.load(EXAMPLES / "resnet18.nn", seed=0).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 1000, (4,))
    loss = torch.nn.functional.cross_entropy(m(x), y)
    loss.backward()
    opt.step()
    assert all(p.grad is not None for p in m.parameters())


def test_kwargs_bind_parameters_and_free_dims():
    m = nndsl.load(EXAMPLES / "resnet18.nn", num_classes=10, seed=0)
    assert m.fc.out_features == 10
    res = nndsl.check(EXAMPLES / "resnet18.nn", B=2, H=64, W=64)
    assert res.ok and str(res.ir.meta.inputs[0].type) == "[2, 3, 64, 64]"


def test_tie_to_a_layer_inside_a_block_instance(torch):
    import nndsl

    src = ("block Enc(V: int, D: int) {\n  input t: [B, T] int64\n  wte = embedding(t, V, D)\n"
           "  output h = layernorm(wte)\n}\n\nmodel M {\n  input t: [B, T] int64\n  enc = Enc(t, 100, 16)\n"
           "  output logits = linear(enc, 100, bias=false, tie=enc.wte)\n}\n")
    res = nndsl.check(source=src)
    assert res.ok
    from nndsl.backends.summary import totals

    assert totals(res.ir)["total_params"] == 100 * 16 + 2 * 16  # the table is counted once
    m = nndsl.load(source=src, seed=0)
    assert m.logits.weight is m.enc.wte.weight
    bad = nndsl.check(source=src.replace("tie=enc.wte", "tie=enc.wtf"))
    d = bad.errors[0]
    assert d.code == "E0114" and d.message == "`enc` has no layer named `wtf`" and d.help == "did you mean `tie=enc.wte`?"
    assert (d.span.line, d.span.col, d.span.end_col) == (10, 52, 59)


def test_a_tie_to_a_layer_that_failed_adds_no_error_of_its_own():
    """The tied layer's own error is the one reported; the tie cannot be judged without its parameters."""
    import nndsl

    src = ("model M(D: int = 8) {\n  input x: [B, T, D]\n  wte = embedding(x, 10, D)\n"
           "  output head = linear(x, 10, bias=false, tie=wte)\n}\n")
    res = nndsl.check(source=src)
    assert [d.code for d in res.errors] == ["E0208"] and res.errors[0].span.line == 3
    ok = nndsl.check(source=src.replace("input x: [B, T, D]", "input t: [B, T] int64\n  x = embedding(t, 10, D)")
                     .replace("embedding(x, 10, D)\n  output", "embedding(t, 10, D)\n  output"))
    assert ok.ok, ok.diagnostics


def test_an_undecided_ensure_shows_both_sides():
    import nndsl

    res = nndsl.check(source="model M {\n  input x: [B, T]\n  ensure shape(x) == [B, 4]\n  output x\n}\n")
    d = res.errors[0]
    assert d.code == "E0206" and d.notes == ["the left side is [B, T] and the right side is [B, 4]"]
    assert nndsl.check(source="model M {\n  input x: [B, T]\n  ensure shape(x) == [B, 4]\n  output x\n}\n",
                       T=4).ok  # bound, it is decided


def test_trainable_params_are_counted_not_copied():
    import nndsl
    from nndsl.backends.summary import totals

    res = nndsl.check("examples/resnet18.nn")
    assert totals(res.ir)["trainable_params"] == 11_689_512
    conv = res.ir.node("conv1")
    conv.params[0].trainable = False  # as a frozen layer will mark it
    t = totals(res.ir)
    assert t["trainable_params"] == 11_689_512 - 64 * 3 * 7 * 7 and t["total_params"] == 11_689_512


def test_repeat_names_its_iterations_from_a_template():
    """torchvision's DenseNet keys (`denseblock1.denselayer1...`) and `encoder_layer_0...` without
    writing every layer out."""
    import nndsl
    from nndsl.syntax import parse_text
    from nndsl.syntax.unparse import unparse

    src = ("block DenseLayer(g: int) {\n  input x: [B, C]\n  y = linear(x, g)\n  output concat(x, y, axis=1)\n}\n"
           "model M {\n  input x: [B, 8]\n  denseblock1 = x |> repeat 3 as i \"denselayer{i+1}\" { DenseLayer(4) }\n"
           "  layers = denseblock1 |> repeat 2 as k \"encoder_layer_{k}\" { linear(20) |> relu }\n  output layers\n}\n")
    res = nndsl.check(source=src)
    assert res.ok, [d.message for d in res.diagnostics]
    keys = sorted(nndsl.load(source=src).state_dict())
    assert keys[:2] == ["denseblock1.denselayer1.y.bias", "denseblock1.denselayer1.y.weight"]
    assert "denseblock1.denselayer3.y.weight" in keys and "layers.encoder_layer_1.0.weight" in keys
    assert unparse(parse_text(unparse(parse_text(src)))) == unparse(parse_text(src))
    for template, code, message in (
            ('"layer"', "E0105", "iterations 0 and 1 of this `repeat` are both named `layer`"),
            ('"keys"', "E0111", "iteration 0 of this `repeat` would be named `keys`, which cannot name a layer"),
            ('"x{j}"', "E0111", "the name template can use only `{i}`, not `{j}`")):
        d = nndsl.check(source=src.replace('"denselayer{i+1}"', template)).errors[0]
        assert (d.code, d.message, d.span.line) == (code, message, 8)


def test_a_chain_as_a_stage_nests_its_names(torch):
    """MobileNetV2's InvertedResidual: `conv.0.0` (a ConvBNReLU inside the block's chain), `conv.1`, `conv.2`."""
    import nndsl

    src = ("model M {\n  input x: [B, 8, 6, 6]\n  conv = x |> (conv2d(16, kernel=1, bias=false) |> batchnorm2d |> relu6)"
           " |> conv2d(8, kernel=1, bias=false) |> batchnorm2d\n  output conv\n}\n")
    m = nndsl.load(source=src, seed=0)
    assert [k for k in m.state_dict() if k.endswith("weight")] == ["conv.0.0.weight", "conv.0.1.weight",
                                                                    "conv.1.weight", "conv.2.weight"]
    assert m(torch.randn(2, 8, 6, 6)).shape == (2, 8, 6, 6)
    bad = nndsl.check(source=src.replace("(conv2d(16", "(x |> conv2d(16"))
    assert not bad.ok  # the inner chain starts with a stage, not a value


def test_a_piped_tuple_fills_the_inputs_in_order(torch):
    src = """block Attend {
  input q: [B, T, D]
  input k: [B, T, D]
  input v: [B, T, D]
  output attention(q, k, v)
}
model M {
  input x: [B, T, 12]
  qkv = chunk(x, 3, axis=2)
  a = qkv |> attention
  b = qkv |> Attend
  output a + b
}
"""
    m = nndsl.load(source=src)
    x = torch.randn(2, 5, 12)
    q, k, v = x.chunk(3, dim=2)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(m(x), 2 * want, atol=1e-6)
    bad = nndsl.check(source="model M {\n  input x: [B, 8]\n  t = chunk(x, 2, axis=1)\n  output t |> matmul\n}\n")
    (err,) = bad.errors
    # both operands come from `t`: one caret there, with both shapes, and no repeated labels
    assert err.code == "E0201" and err.span.line == 4 and err.label == "[B, 4] and [B, 4]"
    assert len({(s.span, s.message) for s in err.secondary}) == len(err.secondary) == 1


def test_an_if_stage_is_there_only_when_its_condition_holds(torch):
    """MobileNet's optional layers: `|> if cond { ... }` is one stage of the chain when the condition holds
    (its own stages nest under it, as a repeat's do), none otherwise, so the indices after it shift as in an
    nn.Sequential built with `if`; `else { ... }` gives the other branch."""
    import nndsl
    from nndsl.syntax import parse_text
    from nndsl.syntax.unparse import unparse

    src = ("block B(expand: bool, se: bool) {\n  input x: [N, 8]\n  hidden = 16\n"
           "  block = x\n    |> if expand { (linear(hidden) |> relu) } else { linear(8) }\n"
           "    |> if se { sigmoid } |> linear(4)\n  output block\n}\n"
           "model M {\n  input x: [N, 8]\n  a = B(x, true, false)\n  b = B(x, false, true)\n  output a, b\n}\n")
    res = nndsl.check(source=src)
    assert res.ok and res.diagnostics == [], [d.message for d in res.diagnostics]   # `hidden`: no W0302
    m = nndsl.load(source=src, seed=0)
    keys = [k for k in m.state_dict() if k.endswith("weight")]
    assert keys == ["a.block.0.0.weight", "a.block.1.weight", "b.block.0.weight", "b.block.2.weight"]
    a, b = m(torch.randn(3, 8))
    assert a.shape == b.shape == (3, 4)
    assert unparse(parse_text(unparse(parse_text(src)))) == unparse(parse_text(src))
    assert "|> if expand { (linear(hidden) |> relu) } else { linear(8) } |> if se { sigmoid }" in \
        unparse(parse_text(src))
    for cond, code, message in (("hidden + 1", "E0106", "a condition must be a bool, got an int"),
                                ("N == 2", "E0115",
                                 "this condition depends on dims that are only known from input shapes")):
        d = nndsl.check(source=src.replace("if expand {", f"if {cond} {{")).errors[0]
        assert (d.code, d.message, d.span.line) == (code, message, 5)


def test_a_chain_made_by_a_repeat_is_numbered_even_with_one_stage(torch):
    """An nn.Sequential built by a loop numbers even one layer (EfficientNet-B0's `features.1.0`); a chain
    in parentheses may start with a `repeat` or an `if` stage."""
    import nndsl
    from nndsl.syntax import parse_text
    from nndsl.syntax.unparse import unparse

    src = ("model M {\n  input x: [B, 8]\n  layer = x |> repeat 1 { linear(8) }\n"
           "  features = layer |> linear(8) |> (repeat 1 as i { linear(8 + i) }) |> (linear(8) |> relu)"
           " |> (if true { linear(8) } |> relu)\n  single = features |> linear(8)\n  output single\n}\n")
    m = nndsl.load(source=src, seed=0)
    assert [k for k in m.state_dict() if k.endswith("weight")] == [
        "layer.0.weight", "features.0.weight", "features.1.0.weight", "features.2.0.weight", "features.3.0.weight",
        "single.weight"]
    assert m(torch.randn(2, 8)).shape == (2, 8)
    assert unparse(parse_text(unparse(parse_text(src)))) == unparse(parse_text(src))
    d = nndsl.check(source=src.replace("single = features |> linear(8)", "single = (repeat 1 { linear(8) })")).errors[0]
    assert (d.code, d.span.line) == ("E0106", 5) and "pipeline stage" in d.message


def test_llama_matches_a_reference_and_counts_llama_7b():
    """RoPE written in the spec (`**` of a number and a tensor, int64 positions times float32
    frequencies), RMSNorm, SwiGLU; Hugging Face's names; LLaMA-7B's published 6,738,415,616 parameters."""
    from nndsl.passes.ensures import param_count

    big = nndsl.check(EXAMPLES / "llama.nn", D=4096, heads=32, hidden=11008, depth=32)
    assert big.ok and param_count(big.ir) == 6_738_415_616
    dims = dict(vocab=1000, D=128, heads=4, hidden=344, depth=2)
    m = nndsl.load(EXAMPLES / "llama.nn", seed=0, **dims).eval()
    torch.manual_seed(1)
    ref = R.Llama(dims["vocab"], dims["D"], dims["heads"], dims["hidden"], dims["depth"]).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.05 + (1.0 if p.dim() == 1 else 0.0))
    assert list(m.state_dict()) == list(ref.state_dict())          # inv_freq is not persistent
    m.load_state_dict(ref.state_dict(), strict=True)
    tokens = torch.randint(0, dims["vocab"], (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(m(tokens), ref(tokens), rtol=1e-4, atol=1e-4)


def test_swin_t_loads_the_reference_state_dict_strictly_and_agrees():
    """Swin-T written out: its relative position index equals the reference's before loading, the
    shifted-window masks are computed in the spec, and the outputs agree with a reference written after
    torchvision's code (stages 1-3 shift their odd blocks; stage 4 does not)."""
    m = nndsl.load(EXAMPLES / "swin_t.nn", seed=0).eval()
    torch.manual_seed(1)
    ref = R.SwinT().eval()
    mine = m.state_dict()
    for k, v in ref.state_dict().items():
        if k.endswith("relative_position_index"):
            assert torch.equal(mine[k], v), k
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    assert nparams(ref) == nparams(m) == 28_288_354
    m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,count,keys", [
    ("convnext_t", 28_589_128, ["features.0.1.weight", "features.1.0.layer_scale", "features.1.0.block.3.weight",
                                "features.2.0.weight", "classifier.2.weight"]),
    ("densenet121", 7_978_856, ["features.denseblock1.denselayer1.norm1.weight",
                                "features.denseblock4.denselayer16.conv2.weight", "features.transition3.conv.weight",
                                "features.norm5.running_var", "classifier.weight"]),
    ("bert_base", 109_482_240, ["embeddings.LayerNorm.weight", "encoder.layer.0.attention.self.query.weight",
                                "encoder.layer.11.attention.output.LayerNorm.bias",
                                "encoder.layer.5.output.dense.weight", "pooler.dense.weight"])])
def test_published_architectures_count_their_published_parameters(name, count, keys):
    """Written from the papers and the reference code (ConvNeXt-T and DenseNet-121 as torchvision writes
    them, BERT-base as Hugging Face does): the published count, checked before anything is built, and the
    reference implementation's key names on the built module."""
    from nndsl.passes.ensures import param_count

    res = nndsl.check(EXAMPLES / f"{name}.nn")
    assert res.ok and param_count(res.ir) == count
    m = nndsl.load(EXAMPLES / f"{name}.nn", seed=0)
    assert nparams(m) == count and set(keys) <= set(m.state_dict())
