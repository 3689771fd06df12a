"""Recipes: the `nasiam-code` recipe holds NASiam's code's values (a table written here from that code, so a later
edit of the TOML cannot drift unnoticed), the resolution order, and the options the recipes set."""

import types

import pytest
import torch

from nasiam_bench.cli import main
from nasiam_bench.config.spec import SCHEDULE_KEYS, SpecError, load_spec
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.models.backbones import build_backbone
from nasiam_bench.search.base import GradientStrategy
from tests.search.test_search import _batches, _tiny_supernet

# github.com/aheuillet/NASiam at e3a1a4c, read file by file: the flag defaults and the README's commands.
NASIAM_CODE = {
    "simsiam": {
        "data.crop_scale": (0.2, 1.0),  # its utils.py: the CIFAR RandomResizedCrop
        # SimSiam/main_search.py (README: --lr 0.06 --wd 5e-4 --fix-pred-lr)
        "search.alpha_init_std": 0.0,  # builder/model: self.alphas = torch.zeros(layers, ops)
        "search.arch_optimizer": "adamw",
        "search.arch_lr": 1e-3,
        "search.arch_betas": (0.9, 0.999),
        "search.arch_weight_decay": 1e-3,
        "search.arch_steps": "batch",
        "search.weight_optimizer": "sgd",
        "search.lr": 0.06,
        "search.lr_scaling": "linear",
        "search.weight_decay": 5e-4,
        "search.schedule": "cosine",
        "search.lr_steps": "epoch",  # adjust_learning_rate(..., epoch, ...) before each epoch
        # SimSiam/main_simsiam.py (README: --lr 0.06 --wd 5e-4 --fix-pred-lr)
        "train.optimizer": "sgd",
        "train.lr": 0.06,
        "train.lr_scaling": "linear",
        "train.weight_decay": 5e-4,
        "train.schedule": "cosine",
        "train.lr_steps": "epoch",  # adjust_learning_rate(..., epoch, ...) before each epoch
        "train.warmup_epochs": 0,
        "train.amp": False,  # autocast(enabled=args.amp), and the README's commands pass no --amp
        "framework.projector_hidden": 0,  # StandardSimSiam: hidden = prev_dim
        # test(): votes weighted by the raw cosine similarity (the exp is commented out) on normalize(encoder(x));
        # best test kNN kept; main_lincls.py: lr 30, wd 0
        "eval.knn_features": "projector",
        "eval.knn_weighted": "cosine",
        "eval.checkpoint": "best-on-test",
        "eval.linear_protocol": "augmented",
        "eval.linear_crop_scale": (0.08, 1.0),  # its CIFAR probe transform: RandomResizedCrop(32) and flip
        "eval.linear_optimizer": "sgd",
        "eval.linear_lr": 30.0,
        "eval.linear_weight_decay": 0.0,
        "eval.linear_lr_steps": "epoch",  # main_lincls.py: adjust_learning_rate before each epoch
    },
    "moco": {
        "data.crop_scale": (0.08, 1.0),  # its utils.py: the CIFAR RandomResizedCrop
        # MoCo/main_search.py
        "search.alpha_init_std": 0.0,  # builder/model: self.alphas = torch.zeros(layers, ops)
        "search.arch_optimizer": "adam",
        "search.arch_lr": 3e-4,
        "search.arch_betas": (0.9, 0.999),
        "search.arch_weight_decay": 1e-3,
        "search.arch_steps": "batch",
        "search.weight_optimizer": "sgd",
        "search.lr": 0.06,
        "search.lr_scaling": "none",
        "search.weight_decay": 5e-4,
        "search.schedule": "cosine",
        "search.lr_steps": "epoch",
        "search.encoder_momentum": 0.999,
        "search.paper_bn_eps_quirk": False,  # the defect is opt-in, in no recipe
        # MoCo/main_moco.py and moco/builder.py
        "train.optimizer": "sgd",
        "train.lr": 0.06,
        "train.lr_scaling": "none",
        "train.weight_decay": 5e-4,
        "train.schedule": "cosine",
        "train.lr_steps": "epoch",
        "train.warmup_epochs": 0,
        "train.amp": False,  # fp32 training (autocast only around test()'s bank features)
        "framework.temperature": 0.1,
        "framework.queue_size": 4096,
        "framework.momentum": 0.99,
        "framework.symmetric": True,
        "eval.knn_features": "projector",
        "eval.knn_weighted": True,
        "eval.knn_temperature": 0.1,
        "eval.checkpoint": "best-on-test",
        "eval.linear_protocol": "augmented",
        "eval.linear_crop_scale": (0.08, 1.0),  # its CIFAR probe transform: RandomResizedCrop(32) and flip
        "eval.linear_optimizer": "sgd",
        "eval.linear_lr": 30.0,
        "eval.linear_milestones": (0.6, 0.8),  # MoCo/main_lincls.py: --schedule 60 80 of --epochs 100, x 0.1
        "eval.linear_weight_decay": 0.0,
        "eval.linear_lr_steps": "epoch",
    },
    "simclr": {
        "data.crop_scale": (0.08, 1.0),  # its utils.py: the CIFAR RandomResizedCrop
        # SimCLR/main_search.py: Adam(arch_parameters()) with Adam's defaults, once per epoch
        "search.alpha_init_std": 0.0,  # builder/model: self.alphas = torch.zeros(layers, ops)
        "search.arch_optimizer": "adam",
        "search.arch_lr": 1e-3,
        "search.arch_betas": (0.9, 0.999),
        "search.arch_weight_decay": 0.0,
        "search.arch_steps": "epoch",
        "search.weight_optimizer": "adam",
        "search.lr": 1e-3,
        "search.lr_scaling": "none",
        "search.weight_decay": 1e-6,
        "search.schedule": "constant",
        # SimCLR/main.py and linear.py
        "train.optimizer": "adam",
        "train.lr": 1e-3,
        "train.lr_scaling": "none",
        "train.weight_decay": 1e-6,
        "train.schedule": "constant",
        "train.warmup_epochs": 0,
        "framework.temperature": 0.5,
        "eval.knn_features": "backbone",
        "eval.knn_weighted": True,
        "eval.knn_temperature": 0.5,
        "eval.checkpoint": "final",
        "eval.linear_protocol": "augmented",
        "eval.linear_crop_scale": (0.08, 1.0),  # its CIFAR probe transform: RandomResizedCrop(32) and flip
        "eval.linear_optimizer": "adam",
        "eval.linear_lr": 1e-3,
        "eval.linear_weight_decay": 1e-6,
        "eval.linear_schedule": "constant",  # linear.py: Adam, no schedule
        "eval.linear_color_jitter": True,  # linear.py's CIFAR_train_transform: ColorJitter (p 0.8), RandomGrayscale
    },
}


def value(spec, key):
    section, name = key.split(".")
    return getattr(getattr(spec, section), name)


@pytest.mark.parametrize("framework", sorted(NASIAM_CODE))
def test_nasiam_code_recipe_holds_the_papers_code_values(framework):
    from tests.engine.test_train import NASIAM_CODE_FRAMEWORKS

    assert NASIAM_CODE_FRAMEWORKS == sorted(NASIAM_CODE)  # a framework added to the recipe needs its table here
    spec = load_spec(f"{framework}_cifar10", ["recipe=nasiam-code"])
    for key, expected in NASIAM_CODE[framework].items():
        assert value(spec, key) == expected, key
    # The recipe sets how a framework trains, never the schedule's scale: the profile's values stay.
    quick = load_spec(f"{framework}_cifar10", ["profile=quick"])
    for key in ("train.epochs", "train.batch_size", "search.epochs", "search.batch_size", "eval.linear_epochs"):
        assert value(spec, key) == value(quick, key), key


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_every_framework_resolves_under_the_reference_recipe(framework):
    spec = load_spec(f"{framework}_cifar10")
    assert spec.experiment.recipe == "reference"
    FRAMEWORKS.get(framework)(build_backbone("resnet18", width=0.125), None, spec.framework.given())


def test_recipe_resolution_order_and_errors(tmp_path):
    # defaults < profile < recipe < experiment file < command line
    assert load_spec("moco_cifar10").framework.temperature == 0.1
    assert load_spec("moco_cifar10", ["recipe=nasiam-code"]).train.lr_scaling == "none"
    path = tmp_path / "mine.toml"
    path.write_text('[experiment]\nframework = "moco"\nrecipe = "nasiam-code"\n[train]\nlr = 0.5\n')
    assert load_spec(path).train.lr == 0.5 and load_spec(path).framework.symmetric is True
    assert load_spec(path, ["train.lr=0.7"]).train.lr == 0.7
    assert load_spec(path, ["framework=simclr"]).train.optimizer == "adam"  # the recipe of the framework chosen
    with pytest.raises(SpecError, match=r"unknown recipe 'nasiam'; valid: nasiam-code, reference"):
        load_spec("moco_cifar10", ["recipe=nasiam"])
    with pytest.raises(
        SpecError, match=r"recipe 'nasiam-code' has no values for 'byol'; it covers: moco, simclr, simsiam"
    ):
        load_spec("byol_cifar10", ["recipe=nasiam-code"])
    with pytest.raises(SpecError, match=r"search.arch_betas = \[0.9\]: expected two values"):
        load_spec("moco_cifar10", ["search.arch_betas=[0.9]"])


@pytest.mark.parametrize("key", SCHEDULE_KEYS)
def test_a_recipe_may_not_set_the_schedule(key, tmp_path, monkeypatch):
    section, name = key.split(".")
    monkeypatch.setenv("NASIAM_CATALOGUE", str(tmp_path))  # a user's catalogue folder, before the shipped one
    tmp_path = tmp_path / "recipes"
    tmp_path.mkdir()
    (tmp_path / "bad.toml").write_text(f"[recipe]\nstrict = true\n[moco.{section}]\n{name} = 800\n")
    with pytest.raises(SpecError, match=rf"moco.{key} is the schedule's scale: a profile sets it"):
        load_spec("moco_cifar10", ["recipe=bad"])
    (tmp_path / "bad.toml").write_text("[recipe]\nstrict = true\n[moco.data]\ntrain_subset = 10\n")
    with pytest.raises(SpecError, match=r"moco.data.train_subset: of \[data\] a recipe sets crop_scale"):
        load_spec("moco_cifar10", ["recipe=bad"])


def test_the_recipes_crop_reaches_the_two_view_loader():
    from nasiam_bench.data.loaders import LoaderConfig

    spec = load_spec("moco_cifar10", ["recipe=nasiam-code"])
    assert LoaderConfig.from_spec(spec, 0, 64, "cpu").crop_scale == (0.08, 1.0)
    assert LoaderConfig.from_spec(load_spec("moco_cifar10"), 0, 64, "cpu").crop_scale == (0.2, 1.0)


def test_show_prints_the_recipe_in_effect(capsys):
    assert main(["show", "moco_cifar10", "recipe=nasiam-code"]) == 0
    out = capsys.readouterr().out
    assert "# recipe 'nasiam-code' (catalogue/recipes/nasiam-code.toml) for moco: sets search.arch_optimizer" in out
    assert 'recipe = "nasiam-code"' in out and "temperature = 0.1" in out and "symmetric = true" in out
    assert "encoder_momentum = 0.999" in out and "momentum = 0.99" in out


def _tiny(name, **options):
    torch.manual_seed(0)
    return FRAMEWORKS.get(name)(build_backbone("resnet18", cifar_stem=True, width=0.125), None, options)


def test_moco_symmetric_loss_is_both_directions_and_enqueues_both_key_sets():
    from nasiam_bench.models.frameworks.losses import info_nce

    model = _tiny("moco", symmetric=True, queue_size=64)
    x1, x2 = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    queue = model.queue.clone()
    with torch.no_grad():
        q1, q2 = (torch.nn.functional.normalize(model.project(x), dim=1) for x in (x1, x2))
        k1, k2 = (torch.nn.functional.normalize(model.key_encoder(x), dim=1) for x in (x1, x2))
        loss = model(x1, x2)["loss"]
    T = model.options["temperature"]
    torch.testing.assert_close(loss, info_nce(q1, k2, queue, T) + info_nce(q2, k1, queue, T))
    assert model.queue_ptr.item() == 16
    torch.testing.assert_close(model.queue[:, :16], torch.cat([k1, k2]).T)
    assert model.online_views == 2 and _tiny("moco").online_views == 1


def test_simsiam_projector_width_follows_its_option():
    feature = build_backbone("resnet18", cifar_stem=True, width=0.125).num_features
    assert _tiny("simsiam").heads["projector"][0].out_features == 2048
    assert _tiny("simsiam", projector_hidden=0).heads["projector"][0].out_features == feature


def test_knn_votes_weighted_or_one_each():
    from nasiam_bench.eval.evaluate import knn_top1
    from nasiam_bench.eval.features import Features

    # The query sits nearest to one image of class 1, then two farther ones of class 0: weighted votes with a
    # low temperature pick class 1, one vote each picks class 0.
    bank = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
    f = Features(bank, torch.tensor([1, 0, 0]), torch.tensor([[1.0, 0.05]]), torch.tensor([1]), 2)
    assert knn_top1(f, k=3, temperature=0.05, weighted=True) == 100.0
    assert knn_top1(f, k=3, temperature=0.05, weighted=False) == 0.0
    # NASiam's SimSiam code: each vote weighs its raw cosine similarity. Class 1 has one neighbour at 1.0 and
    # one at 0.1 (1.1 in all), class 0 three at 0.7 (2.1): cosine votes pick class 0, exp(sim / 0.05) class 1.
    far = [0.7, 0.51**0.5]
    bank = torch.tensor([[1.0, 0.0], [0.1, 0.99**0.5], far, far, [far[0], -far[1]]])
    f = Features(bank, torch.tensor([1, 1, 0, 0, 0]), torch.tensor([[1.0, 0.0]]), torch.tensor([1]), 2)
    assert knn_top1(f, k=5, temperature=0.05, weighted=True) == 100.0
    assert knn_top1(f, k=5, temperature=0.05, weighted="cosine") == 0.0
    # ... and where one vote each picks class 0 (3 against 2), cosine votes pick class 1 (1.9 against 0.6).
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.19**0.5], [0.2, 0.96**0.5], [0.2, -(0.96**0.5)], [0.2, 0.96**0.5]])
    f = Features(bank, torch.tensor([1, 1, 0, 0, 0]), torch.tensor([[1.0, 0.0]]), torch.tensor([1]), 2)
    assert knn_top1(f, k=5, weighted=False) == 0.0
    assert knn_top1(f, k=5, weighted="cosine") == 100.0


@pytest.mark.parametrize("value", [1, "exp", 0.5])
def test_knn_votes_refuse_what_they_do_not_know(value):
    with pytest.raises(SpecError, match="knn_weighted"):
        load_spec("moco_cifar10", [f"eval.knn_weighted={value}"])


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_knn_on_projector_outputs_uses_the_projector(framework):
    from nasiam_bench.eval.evaluate import knn_encoder

    model = _tiny(framework).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(knn_encoder(model, "projector")(x), model.project(x))
        torch.testing.assert_close(knn_encoder(model, "backbone")(x), model.backbone(x))


def test_paper_bn_eps_quirk_sets_the_output_width_as_epsilon():
    from nasiam_bench.models.heads.ops import search_space
    from nasiam_bench.models.heads.supernet import SearchHead

    cell = FRAMEWORKS.get("moco").search_cells(64)["projector"]
    quirky, plain = SearchHead(search_space(), cell, bn_eps_quirk=True), SearchHead(search_space(), cell)
    assert [layer.fused_bn.eps for layer in quirky.layers] == [64.0] * 4
    assert [layer.fused_bn.eps for layer in plain.layers] == [1e-5] * 4
    # With eps = 64 the linear ops' outputs are crushed: what the paper's MoCo search compared its poolings with.
    x = torch.randn(32, 64)
    linear = [quirky.layers[0]._linear(x, torch.ones(7), [0]), plain.layers[0]._linear(x, torch.ones(7), [0])]
    assert linear[0].abs().mean() < 0.2 * linear[1].abs().mean()


@pytest.mark.parametrize("arch_steps", ["batch", "epoch"])
def test_alpha_steps_per_batch_or_per_epoch(arch_steps, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(GradientStrategy, "arch_step", lambda self, batch, loss_fn=None: calls.append(1) or 0.0)
    monkeypatch.setattr(GradientStrategy, "weight_step", lambda self, batch, loss_fn=None: 0.0)

    class Loader(list):
        def set_epoch(self, epoch):
            pass

    spec = load_spec("simsiam_cifar10", ["profile=smoke", f"search.arch_steps={arch_steps}", "search.epochs=2"])
    batches = Loader((v1, v2, None) for v1, v2 in _batches(n=3))
    ctx = types.SimpleNamespace(
        search=spec.search,
        build_supernet=_tiny_supernet,
        train_loader=batches,
        val_loader=batches,
        out_dir=tmp_path,
        ops=[],
        progress=False,
        amp=False,
        identity="",
        seed=0,
        device=None,
    )
    SEARCH_STRATEGIES.get("darts")().run(ctx)
    assert len(calls) == (6 if arch_steps == "batch" else 2)  # 3 batches x 2 epochs, or one an epoch


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "lars"])
def test_pretraining_optimisers(optimizer):
    from nasiam_bench.core.optim import build_optimizer, scaled_lr

    model = _tiny("simsiam")
    opt = build_optimizer(optimizer, model.param_groups(), scaled_lr(0.1, "linear", 512), 1e-4)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2) and opt.param_groups[1]["fixed_lr"]
    loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))["loss"]
    loss.backward()
    before = model.backbone.conv1.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.backbone.conv1.weight)
    assert scaled_lr(0.1, "none", 512) == 0.1


def test_the_probes_resized_crops_cover_the_scale_and_mirror():
    from nasiam_bench.config.spec import EvalSection
    from nasiam_bench.eval.probe import _view, probe_augmentation

    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    whole = EvalSection(linear_crop_scale=(1.0, 1.0))  # no ratio but ~1 fits: torchvision's whole-image fallback
    out = _view(x, whole, mean, std, torch.Generator().manual_seed(0))
    mirrored = [torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(out, x, strict=True)]
    kept = [torch.allclose(o, i, atol=1e-5) for o, i in zip(out, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and any(mirrored) and any(kept)
    wide = EvalSection(linear_crop_scale=(0.08, 1.0))
    crops = _view(x, wide, mean, std, torch.Generator().manual_seed(0))
    assert crops.shape == x.shape and torch.equal(crops, _view(x, wide, mean, std, torch.Generator().manual_seed(0)))
    assert not any(
        torch.allclose(c, i, atol=1e-3) or torch.allclose(c, i.flip(-1), atol=1e-3)
        for c, i in zip(crops, x, strict=True)
    )
    assert probe_augmentation(wide) == "resized crop (8%-100%) and flip"
    assert probe_augmentation(EvalSection()) == "crop and flip"
    with pytest.raises(SpecError, match=r"eval.linear_crop_scale = \[1.0, 0.2\]: the smaller area first"):
        load_spec("moco_cifar10", ["eval.linear_crop_scale=[1.0, 0.2]"])
    with pytest.raises(SpecError, match=r"eval.linear_crop_scale = \[0.2\]: expected two values"):
        load_spec("moco_cifar10", ["eval.linear_crop_scale=[0.2]"])


def test_the_probes_colour_jitter_recolours_some_views_and_greys_about_a_fifth():
    from nasiam_bench.config.spec import EvalSection
    from nasiam_bench.eval.probe import _view, probe_augmentation

    pixels = torch.rand(400, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    x = (pixels - mean) / std
    whole = EvalSection(linear_crop_scale=(1.0, 1.0))  # views are the image or its mirror but for the colour
    plain = _view(x, whole, mean, std, torch.Generator().manual_seed(0))
    jittered = EvalSection(linear_crop_scale=(1.0, 1.0), linear_color_jitter=True)
    out = _view(x, jittered, mean, std, torch.Generator().manual_seed(0))
    assert torch.equal(out, _view(x, jittered, mean, std, torch.Generator().manual_seed(0)))
    back = out * std + mean
    assert back.min() >= -1e-5 and back.max() <= 1 + 1e-5  # recoloured images stay images
    grey = (back.amax(dim=1) - back.amin(dim=1)).flatten(1).amax(dim=1) < 1e-5
    changed = (out - plain).flatten(1).abs().amax(dim=1) > 1e-3
    assert 0.1 < grey.float().mean() < 0.3 and 0.7 < changed.float().mean() < 0.95
    assert probe_augmentation(jittered) == "resized crop (100%-100%) and flip, colour jitter and grayscale"


def test_crop_and_flip_translates_and_mirrors():
    from nasiam_bench.eval.probe import crop_and_flip

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    fill = torch.full((1, 3, 1, 1), -1.0)
    out = crop_and_flip(x, 2, fill, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):  # each output is a shifted (and perhaps mirrored) window of the padded image
        padded = torch.nn.functional.pad(x[i] + 1, (2, 2, 2, 2)) - 1
        windows = [padded[:, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
