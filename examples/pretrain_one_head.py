"""Pre-train one SSL head on nasiam-bench's public API, in a plain PyTorch loop: a timm backbone, a registered
framework with its standard heads or the heads a genotype's ops describe, the framework's own loss, and a kNN
read-out of the backbone. No spec, runner or loader of the suite: what the heads and losses make possible alone.

    python examples/pretrain_one_head.py moco                                   # random images, a smoke run
    python examples/pretrain_one_head.py moco --ops projector=linear_elu,identity,avgpool_3x3,linear_relu --steps 50
    python examples/pretrain_one_head.py simsiam --data /data/cifar10-tree --steps 500   # train/ and test/ folders

The suite's bench adds what a comparison needs on top (the same seeds, data and schedule for every head, paired
differences, checkpoints, records): `make bench FRAMEWORK=moco`."""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.models.backbones import build_backbone
from nasiam_bench.models.frameworks.base import Framework
from nasiam_bench.models.heads.genotype import Genotype, build_heads, parse_ops_head


def build(framework: str, ops: str | None, width: float) -> Framework:
    """The framework around a fresh CIFAR-stem ResNet-18: its standard heads, or the heads of ``ops``
    (``projector=OP,OP,...[;predictor=OP,...]``, one op per searched layer, as ``nasiam-bench list`` names them)."""
    backbone = build_backbone("resnet18", cifar_stem=True, width=width)
    cls = FRAMEWORKS.get(framework)
    heads = None
    if ops:
        cells = cls.search_cells(int(backbone.num_features))
        heads = build_heads(Genotype(framework, parse_ops_head(ops)), cells, where="--ops")
    return cls(backbone, heads, {})


def two_views(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views of a batch: a random crop of 24-32 pixels resized back, a flip, brightness jitter."""

    def view(x: torch.Tensor) -> torch.Tensor:
        size = int(torch.randint(24, 33, ()).item())
        top, left = (int(torch.randint(0, 33 - size, ()).item()) for _ in range(2))
        x = F.interpolate(x[:, :, top : top + size, left : left + size], size=32, mode="bilinear")
        x = torch.where(torch.rand(len(x), 1, 1, 1) < 0.5, x.flip(-1), x)
        return x * (1 + 0.4 * (torch.rand(len(x), 1, 1, 1) - 0.5))

    return view(images), view(images)


def images(data: str | None, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` normalised 32x32 images and labels: random ones, or an ImageFolder tree's ``split``."""
    if data is None:
        return torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,))
    import torchvision.transforms.v2 as T
    from torchvision.datasets import ImageFolder

    to_tensor = T.Compose([T.ToImage(), T.Resize(32), T.CenterCrop(32), T.ToDtype(torch.float32, scale=True)])
    folder = ImageFolder(f"{data}/{split}", transform=to_tensor)
    picked = torch.randperm(len(folder))[:n].tolist()
    x = torch.stack([folder[i][0] for i in picked])
    return (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True), torch.tensor(
        [folder.targets[i] for i in picked]
    )


@torch.no_grad()
def knn_top1(backbone: torch.nn.Module, bank: tuple, queries: tuple, k: int = 20) -> float:
    """Top-1 % of a cosine kNN vote of the backbone's features (the read-out the suite's tables report)."""
    backbone.eval()
    bank_f, query_f = (F.normalize(backbone(x), dim=1) for x in (bank[0], queries[0]))
    nearest = (query_f @ bank_f.T).topk(k, dim=1).indices
    votes = F.one_hot(bank[1][nearest], int(bank[1].max()) + 1).sum(1)
    backbone.train()
    return 100.0 * (votes.argmax(1) == queries[1]).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("framework", choices=FRAMEWORKS.list())
    parser.add_argument("--ops", help="projector=OP,OP,...[;predictor=OP,...] (default: the standard heads)")
    parser.add_argument("--data", help="an ImageFolder tree with train/ and test/ (default: random images)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.125, help="the ResNet's channel multiplier")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build(args.framework, args.ops, args.width)
    optimizer = torch.optim.SGD(model.param_groups(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    train, test = images(args.data, "train", 2048), images(args.data, "test", 512)
    print(f"{args.framework}: {sum(p.numel() for p in model.heads.parameters()):,} head parameters")
    print(f"kNN top-1 before: {knn_top1(model.backbone, train, test):.1f}%")
    for step in range(args.steps):
        batch = train[0][torch.randint(0, len(train[0]), (args.batch,))]
        loss = model(*two_views(batch))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.after_step((step + 1) / args.steps)  # momentum encoders follow the online one
        print(f"step {step + 1}/{args.steps}: loss {loss.item():.4f}")
    print(f"kNN top-1 after: {knn_top1(model.backbone, train, test):.1f}%")


if __name__ == "__main__":
    main()
