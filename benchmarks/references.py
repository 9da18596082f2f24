"""Hand-written PyTorch models: the references the tests compare against and the benchmarks time.
ResNet follows torchvision's torchvision/models/resnet.py structure and names exactly."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# -- ResNet, as torchvision writes it ---------------------------------------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes=1000):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet50(num_classes=1000):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


# -- transformer pieces ---------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, d, heads, causal=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLPBlock(nn.Module):
    def __init__(self, d, hidden, approximate="none"):
        super().__init__()
        self.fc = nn.Linear(d, hidden)
        self.proj = nn.Linear(hidden, d)
        self.approximate = approximate

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))


class TransformerBlock(nn.Module):
    def __init__(self, d, heads, hidden, causal=False, approximate="none", eps=1e-5):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, heads, causal)
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.mlp = MLPBlock(d, hidden, approximate)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, vocab=50257, n_ctx=1024, d=768, depth=12, heads=12):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_ctx, d)
        self.h = nn.ModuleList([TransformerBlock(d, heads, 4 * d, True, "tanh") for _ in range(depth)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.h:
            x = blk(x)
        return self.lm_head(self.ln_f(x))


class MLP(nn.Module):
    def __init__(self, d_in=784, hidden=256, out=10, depth=3):
        super().__init__()
        dims = [d_in] + [hidden] * (depth - 1)
        self.hidden = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.head = nn.Linear(dims[-1], out)

    def forward(self, x):
        for lin in self.hidden:
            x = F.relu(lin(x))
        return F.log_softmax(self.head(x), dim=-1)


# -- MobileNetV3-Small, as torchvision writes it (torchvision/models/mobilenetv3.py) ------------------
def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_bn_act(c_in, c_out, kernel, stride=1, groups=1, act=nn.Hardswish, eps=0.001, momentum=0.01):
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(c_out, eps=eps, momentum=momentum)]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


class InvertedResidual(nn.Module):
    def __init__(self, c_in, kernel, c_exp, c_out, use_se, act, stride):
        super().__init__()
        self.use_res_connect = stride == 1 and c_in == c_out
        layers = []
        if c_exp != c_in:
            layers.append(_conv_bn_act(c_in, c_exp, 1, act=act))
        layers.append(_conv_bn_act(c_exp, c_exp, kernel, stride, groups=c_exp, act=act))
        if use_se:
            layers.append(SqueezeExcitation(c_exp, _make_divisible(c_exp // 4, 8)))
        layers.append(_conv_bn_act(c_exp, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res_connect else y


class MobileNetV3Small(nn.Module):
    CONFIG = [(16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
              (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
              (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
              (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1)]

    def __init__(self, num_classes=1000):
        super().__init__()
        layers = [_conv_bn_act(3, 16, 3, 2)]
        for c_in, k, c_exp, c_out, se, act, s in self.CONFIG:
            layers.append(InvertedResidual(c_in, k, c_exp, c_out, se, nn.Hardswish if act == "HS" else nn.ReLU, s))
        layers.append(_conv_bn_act(96, 576, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(1024, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# -- EfficientNet-B0, as torchvision writes it (torchvision/models/efficientnet.py) ------------------
class MBConv(nn.Module):
    def __init__(self, c_in, c_out, expand, kernel, stride, p):
        super().__init__()
        self.use_res_connect = stride == 1 and c_in == c_out
        c_exp = c_in * expand
        layers = []
        if c_exp != c_in:
            layers.append(_conv_bn_act(c_in, c_exp, 1, act=nn.SiLU, eps=1e-5, momentum=0.1))
        layers.append(_conv_bn_act(c_exp, c_exp, kernel, stride, groups=c_exp, act=nn.SiLU, eps=1e-5, momentum=0.1))
        se = SqueezeExcitation(c_exp, max(1, c_in // 4))
        se.activation, se.scale_activation = nn.SiLU(), nn.Sigmoid()
        layers.append(se)
        layers.append(_conv_bn_act(c_exp, c_out, 1, act=None, eps=1e-5, momentum=0.1))
        self.block = nn.Sequential(*layers)
        self.p = p

    def forward(self, x):
        y = self.block(x)
        if not self.use_res_connect:
            return y
        if self.training and self.p > 0:
            keep = y.new_empty((y.shape[0], 1, 1, 1)).bernoulli_(1 - self.p)
            y = y * keep / (1 - self.p)
        return y + x


class EfficientNetB0(nn.Module):
    STAGES = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
              (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]

    def __init__(self, num_classes=1000, stochastic_depth_prob=0.2):
        super().__init__()
        layers = [_conv_bn_act(3, 32, 3, 2, act=nn.SiLU, eps=1e-5, momentum=0.1)]
        total, b = sum(s[-1] for s in self.STAGES), 0
        for expand, k, stride, c_in, c_out, n in self.STAGES:
            stage = []
            for j in range(n):
                stage.append(MBConv(c_in if j == 0 else c_out, c_out, expand, k, stride if j == 0 else 1,
                                    stochastic_depth_prob * b / total))
                b += 1
            layers.append(nn.Sequential(*stage))
        layers.append(_conv_bn_act(320, 1280, 1, act=nn.SiLU, eps=1e-5, momentum=0.1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# -- a LLaMA decoder, as Hugging Face's modeling_llama.py computes it ----------------------------------
class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary(x, base=10000.0):
    hd, t = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.outer(torch.arange(t).float(), inv_freq)
    emb = torch.cat([freqs, freqs], -1)
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    return x * emb.cos() + torch.cat([-x2, x1], -1) * emb.sin()


class LlamaAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d, bias=False) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape
        split = lambda z: z.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = rotary(split(self.q_proj(x))), rotary(split(self.k_proj(x))), split(self.v_proj(x))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(a.transpose(1, 2).reshape(b, t, d))


class LlamaMLP(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, d, heads, hidden):
        super().__init__()
        self.input_layernorm, self.self_attn = RMSNorm(d), LlamaAttention(d, heads)
        self.post_attention_layernorm, self.mlp = RMSNorm(d), LlamaMLP(d, hidden)

    def forward(self, x):
        h = x + self.self_attn(self.input_layernorm(x))
        return h + self.mlp(self.post_attention_layernorm(h))


class Llama(nn.Module):
    def __init__(self, vocab=32000, d=512, heads=8, hidden=1376, depth=4):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.Sequential(*[LlamaDecoderLayer(d, heads, hidden) for _ in range(depth)])
        self.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, tokens):
        return self.lm_head(self.norm(self.layers(self.embed_tokens(tokens))))


# -- Swin-T, as torchvision writes it (torchvision/models/swin_transformer.py, v1) --------------------
def shifted_window_attention(x, qkv, proj, table, index, heads, ws, shift):
    b, h, w, c = x.shape
    if ws >= h:                    # the window covers the feature map: nothing to shift
        shift = 0
    if shift > 0:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    nw = (h // ws) * (w // ws)
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nw, ws * ws, c)
    q, k, v = qkv(x).reshape(x.size(0), x.size(1), 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = (q * (c // heads) ** -0.5).matmul(k.transpose(-2, -1))
    n = ws * ws
    attn = attn + table[index].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
    if shift > 0:
        mask = x.new_zeros((h, w))
        count = 0
        for hs in ((0, -ws), (-ws, -shift), (-shift, None)):
            for wsl in ((0, -ws), (-ws, -shift), (-shift, None)):
                mask[hs[0]:hs[1], wsl[0]:wsl[1]] = count
                count += 1
        mask = mask.view(h // ws, ws, w // ws, ws).permute(0, 2, 1, 3).reshape(nw, n)
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = attn.view(x.size(0) // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, n, n)
    x = F.softmax(attn, dim=-1).matmul(v).transpose(1, 2).reshape(x.size(0), n, c)
    x = proj(x).view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    return torch.roll(x, shifts=(shift, shift), dims=(1, 2)) if shift > 0 else x


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim, heads, ws=7, shift=0):
        super().__init__()
        self.heads, self.ws, self.shift = heads, ws, shift
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        coords = torch.flatten(torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")), 1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += ws - 1
        rel[:, :, 1] += ws - 1
        rel[:, :, 0] *= 2 * ws - 1
        self.register_buffer("relative_position_index", rel.sum(-1).flatten())

    def forward(self, x):
        return shifted_window_attention(x, self.qkv, self.proj, self.relative_position_bias_table,
                                        self.relative_position_index, self.heads, self.ws, self.shift)


class SwinBlock(nn.Module):
    def __init__(self, dim, heads, shift):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), ShiftedWindowAttention(dim, heads, 7, shift)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim),
                                 nn.Dropout(0.0))

    def forward(self, x):                     # stochastic depth is the identity in eval mode
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction, self.norm = nn.Linear(4 * dim, 2 * dim, bias=False), nn.LayerNorm(4 * dim)

    def forward(self, x):
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SwinT(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, 96, 4, 4), _Permute(0, 2, 3, 1), nn.LayerNorm(96))]
        for i, (depth, heads) in enumerate(zip((2, 2, 6, 2), (3, 6, 12, 24))):
            dim = 96 * 2 ** i
            layers.append(nn.Sequential(*[SwinBlock(dim, heads, 0 if j % 2 == 0 else 3) for j in range(depth)]))
            if i < 3:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(768)
        self.head = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.head(self.norm(self.features(x)).mean((1, 2)))


class _Permute(nn.Module):
    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)
