"""DistributedDataParallel, and FSDP2 (`fully_shard` per transformer block), over gloo with 2 CPU processes
train a compiled example (`nndsl compile` output, imported as a plain module) to the same weights as one
process on the same global batch: nndsl modules keep no module-level state and no hooks, so PyTorch's data
parallelism and sharding take them unchanged (docs/scaling.md)."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nndsl

ROOT = Path(__file__).resolve().parents[1]
DIMS = dict(vocab=64, n_ctx=16, D=32, depth=2, heads=2)        # GPT-2's layers, tied embedding, at a small width
STEPS, LR, BATCH, T = 3, 0.05, 8, 12

_WORKER = '''
import os, sys, importlib.util, torch, torch.distributed as dist
rank, world, port, src, out = int(sys.argv[1]), 2, sys.argv[2], sys.argv[3], sys.argv[4]
os.environ["MASTER_ADDR"] = "127.0.0.1"; os.environ["MASTER_PORT"] = port
dist.init_process_group("gloo", rank=rank, world_size=world)
spec = importlib.util.spec_from_file_location("gpt", src); mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
model = mod.build(0)
if sys.argv[5] == "fsdp":
    from torch.distributed.fsdp import fully_shard
    for block in list(model.modules()):
        if type(block).__name__.startswith("TransformerBlock"):
            fully_shard(block)
    ddp = fully_shard(model)
else:
    ddp = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.SGD(ddp.parameters(), lr={lr})
tokens = torch.randint(0, {vocab}, ({steps}, {batch}, {t}), generator=torch.Generator().manual_seed(7))
half = {batch} // world
for s in range({steps}):
    x = tokens[s, rank * half:(rank + 1) * half]
    opt.zero_grad()
    logits = ddp(x)
    torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, {vocab}), x[:, 1:].reshape(-1)).backward()
    opt.step()
state = {{k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
         for k, v in model.state_dict().items()}}
if rank == 0:
    torch.save(state, out)
dist.barrier()
dist.destroy_process_group()
print("ok", rank, flush=True)
os._exit(0)        # skip interpreter teardown: gloo's threads can abort it
'''


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_data_parallel_trains_to_the_weights_of_one_process(mode, tmp_path):
    src = tmp_path / "gpt.py"
    src.write_text(nndsl.compile_source(str(ROOT / "examples" / "gpt2_small.nn"), **DIMS))
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER.format(lr=LR, vocab=DIMS["vocab"], steps=STEPS, batch=BATCH, t=T))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    out = tmp_path / "ddp.pt"
    procs = [subprocess.Popen([sys.executable, str(worker), str(r), port, str(src), str(out), mode],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        o, e = p.communicate(timeout=240)
        assert p.returncode == 0 and "ok" in o, e[-2000:]

    import importlib.util

    spec = importlib.util.spec_from_file_location("gpt_single", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.build(0)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    tokens = torch.randint(0, DIMS["vocab"], (STEPS, BATCH, T), generator=torch.Generator().manual_seed(7))
    for s in range(STEPS):                       # the global batch at once
        x = tokens[s]
        opt.zero_grad()
        logits = model(x)
        torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, DIMS["vocab"]), x[:, 1:].reshape(-1)).backward()
        opt.step()
    got = torch.load(out, weights_only=True)
    want = model.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert torch.allclose(got[k], want[k], atol=2e-6, rtol=1e-5), (k, float((got[k] - want[k]).abs().max()))
    init = mod.build(0).state_dict()
    moved = max(float((want[k] - init[k]).abs().max()) for k in want)
    assert moved > 1e-3                          # training changed the weights: the equality is not vacuous
