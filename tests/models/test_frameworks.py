import pytest
import torch

from nasiam_bench.core.registry import FRAMEWORKS, NasiamBenchError
from nasiam_bench.models.backbones import build_backbone

FRAMEWORK_NAMES = FRAMEWORKS.list()


def tiny(name, **options):
    torch.manual_seed(0)
    return FRAMEWORKS.get(name)(build_backbone("resnet18", cifar_stem=True, width=0.125), None, options)


def test_registered():
    assert set(FRAMEWORKS.list()) >= set(FRAMEWORK_NAMES)


def test_baseline_heads_match_the_papers():
    simsiam = tiny("simsiam")
    proj, pred = simsiam.heads["projector"], simsiam.heads["predictor"]
    linears = [m for m in proj if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 2048), (2048, 2048), (2048, 2048)]
    assert isinstance(proj[-1], torch.nn.BatchNorm1d) and not proj[-1].affine  # output BN without affine
    assert [(m.in_features, m.out_features) for m in pred if isinstance(m, torch.nn.Linear)] == [
        (2048, 512),
        (512, 2048),
    ]
    moco = tiny("moco")
    assert [(m.in_features, m.out_features) for m in moco.heads["projector"] if isinstance(m, torch.nn.Linear)] == [
        (64, 64),
        (64, 128),
    ]
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in moco.heads["projector"])
    byol = tiny("byol")
    assert byol.heads["projector"][0].out_features == 4096 and byol.heads["predictor"][-1].out_features == 256


def test_moco_queue_and_momentum_update():
    model = tiny("moco", queue_size=10, momentum=0.9)
    assert model.queue.shape == (128, 10)
    torch.testing.assert_close(model.queue.norm(dim=0), torch.ones(10))
    key_before = [p.clone() for p in model.key_encoder.parameters()]
    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    model(x1, x2)["loss"].backward()
    with torch.no_grad():
        model.key_encoder.eval()
        keys = torch.nn.functional.normalize(model.key_encoder(x2), dim=1)
        model.key_encoder.train()
    assert model.queue_ptr.item() == 4
    # The newest keys sit in the first four slots; eval-mode BN differs from the train-mode keys, so compare
    # direction loosely and the untouched slots exactly.
    assert torch.nn.functional.cosine_similarity(model.queue[:, :4].T, keys).min() > 0.5
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(torch.ones_like(p))  # a fake optimiser step
    online = [*model.backbone.parameters(), *model.heads["projector"].parameters()]
    model.after_step(0.5)
    for before, after, q in zip(key_before, model.key_encoder.parameters(), online, strict=True):
        torch.testing.assert_close(after, 0.9 * before + 0.1 * q)
    model(x1, x2)
    model(x1, x2)
    assert model.queue_ptr.item() == 2  # 12 keys through a queue of 10 wrap around


@pytest.mark.parametrize("name", FRAMEWORK_NAMES)
def test_training_steps_lower_the_loss(name, cifar10_ssl_loader):
    view1, view2, _ = next(iter(cifar10_ssl_loader))
    view1, view2 = view1[:32], view2[:32]
    model = tiny(name)
    optimizer = torch.optim.SGD([g for g in model.param_groups()], lr=0.05, momentum=0.9)
    buffers = {k: v.clone() for k, v in model.named_buffers() if k.startswith("queue")}

    def loss_now():
        saved = {k: v.clone() for k, v in model.named_buffers() if k.startswith("queue")}
        with torch.no_grad():
            for k, v in buffers.items():  # MoCo: the same negatives before and after
                model.get_buffer(k).copy_(v)
            loss = model(view1, view2)["loss"].item()
            for k, v in saved.items():
                model.get_buffer(k).copy_(v)
        return loss

    first = loss_now()
    for step in range(6):
        loss = model(view1, view2)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.after_step((step + 1) / 6)
    assert loss_now() < first


def test_simsiam_predictor_keeps_a_fixed_learning_rate():
    groups = tiny("simsiam").param_groups()
    assert [bool(g.get("fixed_lr")) for g in groups] == [False, True]


def test_wrong_heads_and_options_fail_clearly():
    backbone = build_backbone("resnet18", cifar_stem=True, width=0.125)
    with pytest.raises(NasiamBenchError, match=r"takes heads projector, predictor; got projector"):
        FRAMEWORKS.get("simsiam")(backbone, {"projector": torch.nn.Identity()})
    with pytest.raises(NasiamBenchError, match=r"option 'queue_size' does not apply to SimCLR; valid: temperature"):
        FRAMEWORKS.get("simclr")(backbone, None, {"queue_size": 3})


def _linear_sizes(module: torch.nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("framework", FRAMEWORK_NAMES)
def test_head_width_scales_the_sizes_the_paper_fixes_and_not_the_feature_size(framework):
    full, half = tiny(framework), tiny(framework, head_width=0.5)
    d = full.feature_dim

    def halved(size):
        return size if size == d else size // 2

    sizes = _linear_sizes(full.heads)
    assert _linear_sizes(half.heads) == [(halved(i), halved(o)) for i, o in sizes] and any(o != d for _, o in sizes)
    cells = FRAMEWORKS.get(framework).search_cells(d)
    narrow = FRAMEWORKS.get(framework).search_cells(d, options={"head_width": 0.5})
    assert {h: tuple(map(halved, c.dims)) for h, c in cells.items()} == {h: c.dims for h, c in narrow.items()}
    x = torch.randn(8, 3, 32, 32)
    assert torch.isfinite(half(x, x.flip(-1))["loss"])


def test_a_plugins_cells_without_options_still_serve_the_search():
    from nasiam_bench.models.frameworks.base import Framework
    from nasiam_bench.models.heads.supernet import Cell

    class Older(Framework):  # a plugin written against _cells(feature_dim, counts)
        @classmethod
        def _cells(cls, feature_dim, counts):
            return {"projector": Cell((feature_dim,) * (counts["projector"] + 1))}

    assert Older.search_cells(16)["projector"].dims == (16,) * 5
