"""Training-step throughput of each framework in the suite against a plain hand-written PyTorch step.

Same backbone (half-width ResNet-18, CIFAR stem, when measured; eighth width, heads narrowed alike, batch 8 in
``make test``), same heads, same batch, same optimiser; the plain step spells the loss out inline and calls no suite
code. Rounds alternate between the two so that drift hits both alike.
"""

import copy
import statistics
import time

import pytest
import torch
import torch.nn.functional as F

from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.engine.train import train_step
from nasiam_bench.models.backbones import build_backbone

BATCH = 64
ROUNDS = 5


def plain_step_fn(name, reference):
    """A hand-written step for ``name`` on ``reference``'s backbone and heads (a copy of the suite's model): forward,
    inline loss, backward, SGD step, momentum update of its target or key encoder."""
    heads = dict(reference.heads)
    backbone, proj, pred = reference.backbone, heads["projector"], heads.get("predictor")
    params = [p for p in [*backbone.parameters(), *proj.parameters(), *(pred.parameters() if pred else [])]]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    target = getattr(reference, "key_encoder", None) or getattr(reference, "target", None)
    queue = F.normalize(torch.randn_like(reference.queue), dim=0) if name == "moco" else None
    ptr = [0]

    def step(x1, x2):
        if name == "simsiam":
            z1, z2 = proj(backbone(x1)), proj(backbone(x2))
            p1, p2 = pred(z1), pred(z2)
            loss = -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean()) / 2
        elif name == "simclr":
            z = F.normalize(torch.cat([proj(backbone(x1)), proj(backbone(x2))]), dim=1)
            n = len(x1)
            logits = z @ z.T / 0.5
            logits.fill_diagonal_(float("-inf"))
            loss = F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(logits.device))
        elif name == "moco":
            q = F.normalize(proj(backbone(x1)), dim=1)
            with torch.no_grad():
                k = F.normalize(target(x2), dim=1)
            logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.clone()], dim=1) / 0.2
            loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=logits.device))
            queue[:, (ptr[0] + torch.arange(len(k), device=k.device)) % queue.shape[1]] = k.T.to(queue.dtype)
            ptr[0] = (ptr[0] + len(k)) % queue.shape[1]
        else:  # byol
            z1, z2 = proj(backbone(x1)), proj(backbone(x2))
            p1, p2 = pred(z1), pred(z2)
            with torch.no_grad():
                t1, t2 = target(x1), target(x2)
            loss = (2 - 2 * F.cosine_similarity(p1, t2)).mean() + (2 - 2 * F.cosine_similarity(p2, t1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if target is not None:
            with torch.no_grad():
                online = [*backbone.parameters(), *proj.parameters()]
                for t, o in zip(target.parameters(), online, strict=True):
                    t.mul_(0.99).add_(o, alpha=0.01)
        return loss

    return step


@pytest.mark.parametrize("name", ["simsiam", "moco", "simclr", "byol"])
@pytest.mark.benchmark(group="train-step")
def test_framework_step_overhead(name, benchmark, report, size):
    torch.manual_seed(0)
    width, batch = size.pick(0.5, 0.125), size.pick(BATCH, 8)
    heads = {"head_width": size.pick(1.0, 0.125)}  # the paper's head sizes when measured; narrowed as in smoke
    model = FRAMEWORKS.get(name)(build_backbone("resnet18", cifar_stem=True, width=width), options=heads)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.param_groups(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

    plain = plain_step_fn(name, copy.deepcopy(model))

    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(batch, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    x2 = torch.randn(batch, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    suite_times, plain_times = [], []

    def suite_round():
        start = time.perf_counter()
        train_step(model, x1, x2, optimizer, scheduler, 0.5)
        suite_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        plain(x1, x2)
        plain_times.append(time.perf_counter() - start)

    suite_round()  # warm-up
    suite_times.clear()
    plain_times.clear()
    benchmark.pedantic(suite_round, rounds=ROUNDS, iterations=1)
    assert len(suite_times) == len(plain_times) >= 1
    suite, ref = statistics.median(suite_times), statistics.median(plain_times)
    benchmark.extra_info.update(
        suite_images_per_s=batch / suite, plain_images_per_s=batch / ref, overhead=suite / ref - 1
    )
    report(
        f"train step {name:8}: suite {batch / suite:6.1f} images/s, plain PyTorch {batch / ref:6.1f} images/s, "
        f"suite/plain time {suite / ref:.3f} (target <= 1.05; ResNet-18 width {width}, batch {batch}, CPU, "
        f"median of {len(suite_times)})"
    )
