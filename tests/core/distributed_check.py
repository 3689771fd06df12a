"""One training step of each framework on a fixed global batch; run alone or under torchrun, saves loss and grads.

python tests/core/distributed_check.py OUT.pt                              # 1 process, the whole batch
python -m torch.distributed.run --nproc_per_node 2 tests/core/distributed_check.py OUT.pt   # 2 processes, halves
"""

import sys

import torch

from nasiam_bench.core import distributed
from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.models.backbones import build_backbone

GLOBAL_BATCH = 8


def main(out: str) -> None:
    ctx = distributed.setup("cpu")
    g = torch.Generator().manual_seed(1)
    view1 = torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g)
    view2 = torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g)
    part = slice(ctx.rank * GLOBAL_BATCH // ctx.world_size, (ctx.rank + 1) * GLOBAL_BATCH // ctx.world_size)
    results = {}
    for name in FRAMEWORKS.list():
        torch.manual_seed(0)
        options = {"queue_size": 16} if name == "moco" else {}
        core = FRAMEWORKS.get(name)(build_backbone("resnet18", cifar_stem=True, width=0.125), None, options)
        if ctx.distributed:
            core = distributed.convert_sync_batchnorm(core, ctx.device)
        loss = core(view1[part], view2[part])["loss"]
        loss.backward()
        distributed.average_gradients(core)
        results[name] = {
            "loss": distributed.all_reduce_mean(loss.detach()).item(),
            "grads": {n: p.grad.clone() for n, p in core.named_parameters() if p.grad is not None},
            "buffers": {n: b.clone() for n, b in core.named_buffers()},
        }
    if ctx.is_main:
        torch.save(results, out)
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1])
