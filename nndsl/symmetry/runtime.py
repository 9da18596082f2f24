# Group-equivariant layers and frame averaging (PyTorch). Self-contained on purpose: `nndsl compile` copies
# this module into the generated source of a model that uses `gconv2d`, `group_pool` or `frame_average`, so
# that source runs with torch alone.
#
# The grid groups C4 and D4 act on the last two axes of an image (rows, columns). Element e = 4 * f + r is
# "flip the columns f times, then rotate by r quarter turns" (torch.rot90 over (rows, cols)); e2 after e1
# is _compose(e2, e1); a regular feature F[..., g, H, W] is acted on as (u·F)[g] = u·F[u⁻¹g].
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def _grid_order(kind):
    return 4 if kind == "c4" else 8


def _compose(a, b):
    """The element acting as b, then a."""
    ra, fa, rb, fb = a % 4, a // 4, b % 4, b // 4
    return 4 * ((fa + fb) % 2) + (ra + (-rb if fa else rb)) % 4


def _inverse(a):
    r, f = a % 4, a // 4
    return a if f else (-r) % 4


def grid_act(x, e, row=-2, col=-1):
    """Element e acting on the grid axes (row, col) of x."""
    if e // 4:
        x = x.flip(col)
    r = e % 4
    return torch.rot90(x, r, dims=(row, col)) if r else x


def regular_index(kind, e):
    """Indices i with (e·F)[g] = F[i[g]] along a regular axis: i[g] = e⁻¹g."""
    inv = _inverse(e)
    return [_compose(inv, g) for g in range(_grid_order(kind))]


def grid_transform(x, kind, e, roles):
    """Element e acting on a tensor whose axes carry `roles` ("row", "col", "regular", "")."""
    if "regular" in roles:
        ax = roles.index("regular")
        x = x.index_select(ax, torch.tensor(regular_index(kind, e), device=x.device))
    if "row" in roles:
        x = grid_act(x, e, roles.index("row"), roles.index("col"))
    return x


class GroupConv2d(nn.Module):
    """A C4 or D4 group convolution (Cohen and Welling 2016). Lifting (`regular_in=False`): [B, C, H, W] ->
    [B, out, |G|, H', W'], one base filter per channel pair, seen rotated (and flipped) by each element.
    Regular (`regular_in=True`): [B, C, |G|, H, W] -> [B, out, |G|, H', W'], the filter over the input's group
    axis permuted as the element says. The expanded kernel is built once per forward and applied by one
    conv2d; weights [out, C, k, k] (lifting) or [out, C, |G|, k, k] are the free parameters of the
    equivariant maps, as many as the solver's basis has."""

    def __init__(self, in_channels, out_channels, kernel_size, group="c4", regular_in=False, stride=1, padding=0,
                 bias=True, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.group, self.regular_in = group, regular_in
        self.order = _grid_order(group)
        self.stride, self.padding = stride, padding
        self.out_channels = out_channels
        shape = (out_channels, in_channels) + ((self.order,) if regular_in else ()) + (kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape, **kw))
        self.bias = nn.Parameter(torch.empty(out_channels, **kw)) if bias else None
        # where each entry of the expanded kernel comes from in the weight's (|G_in|, k, k) block: every
        # element's rotated (flipped) and permuted copy, read by one gather per forward
        src = torch.arange(math.prod(shape[2:])).reshape(shape[2:])
        per = []
        for e in range(self.order):
            s = src[regular_index(group, e)] if regular_in else src
            per.append(grid_act(s, e))
        self.register_buffer("_gather", torch.stack(per).reshape(-1), persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        """As nn.Conv2d: U(±1/√fan_in) for the weight and the bias, fan_in = C·|G_in|·k²."""
        bound = 1 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def expanded(self):
        """The kernel [out·|G|, C·|G_in|, k, k] of the equivalent conv2d."""
        w = self.weight
        o, c, k = w.shape[0], w.shape[1], w.shape[-1]
        e = w.flatten(2)[:, :, self._gather].view(o, c, self.order, -1, k, k)    # [out, C, G, (G_in), k, k]
        return e.transpose(1, 2).reshape(o * self.order, -1, k, k)

    def forward(self, x):
        b = x.shape[0]
        if self.regular_in:
            x = x.reshape(b, -1, x.shape[-2], x.shape[-1])
        bias = self.bias.repeat_interleave(self.order) if self.bias is not None else None
        y = F.conv2d(x, self.expanded(), bias, self.stride, self.padding)
        return y.view(b, self.out_channels, self.order, y.shape[-2], y.shape[-1])


class EquivariantMap(nn.Module):
    """[..., C, D] -> [..., out, D] with the weight W[o, :, c, :] = Σ_m θ[o, c, m] B_m over the maps B_m of D that
    commute with a group (the solver's basis scaled to the identity's norm, fixed), and the bias Σ_k β[o, k] v_k
    over its invariant vectors: equivariant by construction. The basis is contracted once per forward, then
    one matmul."""

    def __init__(self, in_channels, out_channels, maps, invariants=None, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        self.register_buffer("maps", torch.tensor(maps, **kw), persistent=False)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, self.maps.shape[0], **kw))
        if invariants:
            self.register_buffer("invariants", torch.tensor(invariants, **kw), persistent=False)
            self.bias = nn.Parameter(torch.empty(out_channels, self.invariants.shape[0], **kw))
        else:
            self.invariants, self.bias = None, None
        self.reset_parameters()

    def reset_parameters(self):
        """As nn.Linear: U(±1/√fan_in) for the coefficients and the bias, fan_in = C·m (each map has the
        identity's norm, so a coefficient meets the input as one dense weight does)."""
        bound = 1 / math.sqrt(max(self.weight[0].numel(), 1))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        o, c, _ = self.weight.shape
        d = self.maps.shape[-1]
        w = torch.einsum("ocm,mij->oicj", self.weight, self.maps.to(self.weight.dtype)).reshape(o * d, c * d)
        y = (x.flatten(-2) @ w.t()).unflatten(-1, (o, d))
        if self.bias is not None:
            y = y + self.bias @ self.invariants.to(self.bias.dtype)
        return y


class TransposedTie(nn.Module):
    """A linear layer whose weight is another layer's, transposed (`tie=transpose(enc)`: W_dec = W_encᵀ, as in
    tied autoencoders); it owns only its bias. The weight is passed in by the module that owns both."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """As nn.Linear's bias: U(±1/√in_features)."""
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x, weight):
        return F.linear(x, weight.t(), self.bias)


def group_pool(x, mode="max"):
    """Pools the group axis of [B, C, |G|, H, W]: invariant to the group's permutation of it."""
    return x.amax(2) if mode == "max" else x.mean(2)


# -- frame averaging (Puny et al. 2022) ------------------------------------------------------------------
def pca_frames(x, axis, special):
    """The frames of point coordinates along `axis` of x (batch axis 0): the eigenvectors of the second
    moment of each example's points (every other axis), largest first, with every choice of signs (2^d
    frames; the 2^(d-1) of determinant +1 for SO(d)). Returns [frames, B, d, d], a frame's axes as columns."""
    pts = x.movedim(axis, -1)
    pts = pts.reshape(pts.shape[0], -1, pts.shape[-1])
    cov = pts.transpose(-1, -2) @ pts / pts.shape[-2]
    _, vecs = torch.linalg.eigh(cov)
    vecs = vecs.flip(-1)                                      # largest variance first
    d = vecs.shape[-1]
    if special:                                               # det +1: fix the first axis's sign
        vecs = torch.cat([vecs[..., :1] * torch.sign(torch.det(vecs)).view(-1, 1, 1), vecs[..., 1:]], -1)
    frames = []
    for signs in itertools.product((1.0, -1.0), repeat=d):
        if special and math.prod(signs) < 0:
            continue
        frames.append(vecs * torch.tensor(signs, dtype=vecs.dtype, device=vecs.device))
    return torch.stack(frames, 0)


def _in_frame(x, axis, frame, back=False):
    """The coordinates along `axis` of x in `frame` [B, d, d] (x @ frame), or back out of it (x @ frameᵀ)."""
    xm = x.movedim(axis, -1)
    f = frame.transpose(-1, -2) if back else frame
    f = f.reshape(f.shape[0], *([1] * (xm.dim() - 2)), *f.shape[-2:])
    return (xm.unsqueeze(-2) @ f).squeeze(-2).movedim(-1, axis)


def _shift(x, axis, centre):
    """x plus the centre [B, d] along `axis`."""
    xm = x.movedim(axis, -1)
    return (xm + centre.reshape(centre.shape[0], *([1] * (xm.dim() - 2)), centre.shape[-1])).movedim(-1, axis)


def frame_average(block, inputs, spec):
    """Runs `block` once per frame and averages its outputs. `spec`: kind (c4, d4, cyclic, dihedral, matrices,
    o3, so3, e3), per input the role of each of its axes, per output the roles its axes carry (what is
    transformed back). Finite groups average over every element; O(d)/SO(d)/E(d) over the PCA frames of the
    first input's coordinates (centred first under E(d), and the centroid added back to equivariant outputs)."""
    in_roles, out_roles = spec["inputs"], spec["outputs"]
    total, single, n = None, False, 0
    for fwd, back in _frames(spec, inputs):
        xs = [fwd(x, r) if any(r) else x for x, r in zip(inputs, in_roles)]
        ys = block(*xs)
        single = not isinstance(ys, tuple)
        ys = [back(y, r) if any(r) else y for y, r in zip((ys,) if single else ys, out_roles)]
        total = ys if total is None else [t + y for t, y in zip(total, ys)]
        n += 1
    out = [t / n for t in total]
    return out[0] if single else tuple(out)


def _frames(spec, inputs):
    """The frames of `frame_average` as (act on an input, act back on an output) pairs, each given a tensor
    and the roles of its axes."""
    kind, in_roles = spec["kind"], spec["inputs"]
    if kind in ("c4", "d4"):
        for e in range(_grid_order(kind)):
            yield (lambda x, r, e=e: grid_transform(x, kind, e, r)), \
                (lambda y, r, e=e: grid_transform(y, kind, _inverse(e), r))
    elif kind in ("cyclic", "dihedral"):
        ref = next(k for k, r in enumerate(in_roles) if "perm" in r)
        size = inputs[ref].shape[in_roles[ref].index("perm")]
        for f in ((0, 1) if kind == "dihedral" else (0,)):
            for s in range(size):
                yield (lambda x, r, s=s, f=f: _roll_flip(x, r, s, f)), \
                    (lambda y, r, s=s, f=f: _roll_flip(y, r, s, f, inverse=True))
    elif kind == "matrices":               # every element M of a finite matrix group: x -> x Mᵀ
        ref = next(x for x, r in zip(inputs, in_roles) if "vec" in r)
        for m in spec["elements"]:
            mat = torch.tensor(m, dtype=ref.dtype, device=ref.device)
            inv = torch.linalg.inv(mat)
            yield (lambda x, r, mat=mat: _matmul_axis(x, r.index("vec"), mat)), \
                (lambda y, r, inv=inv: _matmul_axis(y, r.index("vec"), inv))
    else:
        ref = next(k for k, r in enumerate(in_roles) if "vec" in r)
        axis = in_roles[ref].index("vec")
        x0 = inputs[ref]
        centre = None
        if kind == "e3":                                      # translations: centre the points first
            centre = x0.movedim(axis, -1).reshape(x0.shape[0], -1, x0.shape[axis]).mean(1)
            x0 = _shift(x0, axis, -centre)

        def into(x, r, fr):
            x = _shift(x, r.index("vec"), -centre) if centre is not None else x
            return _in_frame(x, r.index("vec"), fr)

        def out_of(y, r, fr):
            y = _in_frame(y, r.index("vec"), fr, back=True)
            return _shift(y, r.index("vec"), centre) if centre is not None else y

        for fr in pca_frames(x0, axis, kind == "so3"):
            yield (lambda x, r, fr=fr: into(x, r, fr)), (lambda y, r, fr=fr: out_of(y, r, fr))


def _matmul_axis(x, axis, m):
    """m acting on the vectors along `axis` of x (x Mᵀ)."""
    return (x.movedim(axis, -1) @ m.t()).movedim(-1, axis)


def _roll_flip(x, roles, shift, flip, inverse=False):
    axes = [k for k, r in enumerate(roles) if r == "perm"]
    for a in axes:
        if inverse:
            x = x.roll(-shift, a)
            if flip:
                x = x.flip(a)
        else:
            if flip:
                x = x.flip(a)
            x = x.roll(shift, a)
    return x
