"""How the CPU runs the work, not what it computes: the optimizer's fused update and the host
allocator's reuse of freed memory. The fused update equals the per-operation one up to float
rounding; the allocator leaves the values exactly as they were."""
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from sln_amodal.config import load_config
from sln_amodal.engine.optimizer import build_optimizer


@pytest.mark.parametrize("optimizer", ["AdamW", "SGD"])
def test_the_built_optimizer_updates_as_the_per_operation_loop(optimizer):
    cfg = load_config(None, ["SOLVER.OPTIMIZER", optimizer, "SOLVER.WEIGHT_DECAY", "0.01"])
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.Conv2d(8, 4, 1))
    reference = [p.detach().clone().requires_grad_() for p in model.parameters()]
    built = build_optimizer(model, cfg.SOLVER, 0.01)
    loop = type(built)(reference, lr=0.01, foreach=False, **{
        k: v for k, v in built.defaults.items() if k in ("betas", "momentum", "weight_decay")})
    for _ in range(5):
        for ours, theirs in zip(model.parameters(), reference):
            ours.grad = torch.randn(ours.shape, generator=g)
            theirs.grad = ours.grad.clone()
        built.step()
        loop.step()
    assert built.defaults["fused"]
    for ours, theirs in zip(model.parameters(), reference):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


def test_freed_host_memory_is_reused_instead_of_faulted_in_again():
    # Page faults are counted in fresh interpreters: the allocator settings hold for a whole process.
    script = textwrap.dedent("""
        import resource, sys, torch
        from sln_amodal.engine.host_memory import keep_freed_host_memory
        if sys.argv[1] == "keep" and not keep_freed_host_memory():
            print("unsupported"); sys.exit()
        def step():  # like a training step: activations (here 10 x 4 MiB) live together, then are freed
            activations = [torch.ones(2**20) for _ in range(10)]
            return float(sum(a.sum() for a in activations))
        step()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        values = {step() for _ in range(50)}
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, values == {10.0 * 2**20})
    """)
    outputs = {}
    for mode in ("default", "keep"):
        run = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        outputs[mode] = run.stdout.split()
    if outputs["keep"] == ["unsupported"]:
        pytest.skip("the C library is not glibc")
    default_faults, keep_faults = int(outputs["default"][0]), int(outputs["keep"][0])
    assert outputs["default"][1] == outputs["keep"][1] == "True"
    assert default_faults > 50 * 5000  # each step faults its 10240 pages in again
    assert keep_faults < default_faults / 10
