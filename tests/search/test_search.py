import copy
import glob
import json
import types

import numpy as np
import pytest
import torch
from torch import nn

from nasiam_bench.cli import main
from nasiam_bench.config.spec import load_spec
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.models.activations import PAPER_CANDIDATES
from nasiam_bench.models.backbones import build_backbone
from nasiam_bench.models.heads.genotype import GenotypeError, build_head, build_heads, load_genotype, sample_genotype
from nasiam_bench.models.heads.ops import Pool1d, build_op, search_space
from nasiam_bench.models.heads.supernet import Cell, MixedLayer, SearchHead
from nasiam_bench.search.base import GradientStrategy
from tests.conftest import REPO, TEST_DATA_ROOT, assert_identical, identical

OPS = search_space(PAPER_CANDIDATES)


def test_search_space_follows_the_activation_registry(monkeypatch):
    assert OPS == [
        "linear_relu",
        "linear_silu",
        "linear_hardswish",
        "linear_elu",
        "identity",
        "avgpool_3x3",
        "maxpool_3x3",
    ]
    assert "linear_gelu" in search_space(("relu", "gelu"))


@pytest.mark.parametrize(("in_dim", "out_dim"), [(24, 24), (24, 8), (8, 24)])
def test_fused_linear_ops_equal_the_naive_sum(in_dim, out_dim):
    torch.manual_seed(0)
    layer = MixedLayer(OPS, in_dim, out_dim).double()
    naive = [build_op(op, in_dim, out_dim).double() for op in OPS]
    d = out_dim
    with torch.no_grad():
        for i, op in enumerate(naive[: layer.n_linear]):  # give each naive linear op its slice of the fused weights
            linear = op if isinstance(op, nn.Linear) else op[0]
            linear.weight.copy_(layer.fused.weight[i * d : (i + 1) * d])
            if linear.bias is not None:
                linear.bias.copy_(layer.fused.bias[i * d : (i + 1) * d])
            if layer.fused_bn is not None:
                layer.fused_bn.weight[i * d : (i + 1) * d].uniform_(0.5, 1.5)
                op[1].weight.copy_(layer.fused_bn.weight[i * d : (i + 1) * d])
        for mine, theirs in zip(layer.others, naive[layer.n_linear :], strict=True):
            theirs.load_state_dict(mine.state_dict())
    x = torch.randn(16, in_dim, dtype=torch.float64, requires_grad=True)
    weights = torch.softmax(torch.randn(len(OPS), dtype=torch.float64), dim=0).requires_grad_()
    expected = sum(w * op(x) for w, op in zip(weights, naive, strict=True))
    got = layer(x, weights)
    torch.testing.assert_close(got, expected)
    # The gradients agree too (a widening layer sums its plain Linears' weights before the multiply).
    probe = torch.randn_like(got)
    naive_linears = [op if isinstance(op, nn.Linear) else op[0] for op in naive[: layer.n_linear]]
    mine = torch.autograd.grad((got * probe).sum(), [x, weights, layer.fused.weight, *layer.others.parameters()])
    theirs = torch.autograd.grad(
        (expected * probe).sum(),
        [
            x,
            weights,
            *(lin.weight for lin in naive_linears),
            *(p for op in naive[layer.n_linear :] for p in op.parameters()),
        ],
    )
    n = layer.n_linear
    torch.testing.assert_close(mine[:2], theirs[:2])
    torch.testing.assert_close(mine[2], torch.cat(theirs[2 : 2 + n]))
    torch.testing.assert_close(mine[3:], theirs[2 + n :])
    x = x.detach()
    # A one-hot (GDAS) sample computes that op alone, from its slice of the fused weights.
    for chosen in (1, 5):
        one_hot = torch.zeros(len(OPS), dtype=torch.float64)
        one_hot[chosen] = 1
        torch.testing.assert_close(layer(x, one_hot, only=chosen), naive[chosen](x))
        assert layer.computed == [chosen]


TINY = {"head_width": 0.125}  # heads narrowed with the eighth-width backbone, as the smoke profile narrows them


def _tiny_supernet(name="simsiam"):
    torch.manual_seed(0)
    framework = FRAMEWORKS.get(name)
    backbone = build_backbone("resnet18", cifar_stem=True, width=0.125)
    cells = framework.search_cells(backbone.num_features, options=TINY)
    return framework(backbone, {h: SearchHead(OPS, c) for h, c in cells.items()}, TINY)


def _batches(n=4, batch=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [tuple(torch.randn(batch, 3, 32, 32, generator=g) for _ in range(2)) for _ in range(n)]


def test_darts_moves_alpha_away_from_uniform_and_derives_the_argmax():
    model = _tiny_supernet()
    strategy = SEARCH_STRATEGIES.get("darts")()
    spec = load_spec("simsiam_cifar10", ["profile=smoke", "search.arch_lr=0.05"])
    strategy.attach(model, spec.search, total_steps=8, batch_size=16)
    start = {h: head.alpha.detach().clone() for h, head in strategy.heads.items()}
    train, val = _batches(seed=0), _batches(seed=1)
    for t, v in zip(train, val, strict=True):
        strategy.step(t, v)
    for name, head in strategy.heads.items():
        moved = (head.alpha.detach() - start[name]).abs().max().item()
        assert moved > 0.05, name  # alpha is trained on the held-out batches
        weights = torch.softmax(head.alpha.detach(), dim=-1)
        assert (weights.max(dim=1).values - weights.min(dim=1).values).min() > 0.01  # no longer uniform
    projector = strategy.heads["projector"]
    with torch.no_grad():
        projector.alpha.zero_()
        for layer, op in enumerate([0, 4, 5, 6, 1, 2]):
            projector.alpha[layer, op] = 1.0
    assert strategy.genotype()["projector"] == [OPS[i] for i in (0, 4, 5, 6, 1, 2)]


def test_darts_architecture_step_leaves_the_backbone_without_gradients():
    model = _tiny_supernet("moco")
    strategy = SEARCH_STRATEGIES.get("darts")()
    strategy.attach(model, load_spec("moco_cifar10", ["profile=smoke"]).search, 4, 16)
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    strategy.step(*_batches(n=2))
    # MoCo: one view through the backbone without autograd (alpha step), then one with it (weight step).
    assert calls == [False, True]


def test_gdas_computes_one_op_per_layer_per_step():
    model = _tiny_supernet()
    strategy = SEARCH_STRATEGIES.get("gdas")()
    strategy.attach(model, load_spec("simsiam_cifar10", ["profile=smoke"]).search, 4, 16)
    strategy.on_epoch(0, 2)
    assert strategy.tau == 10.0
    seen = set()
    for t, v in zip(_batches(seed=0), _batches(seed=1), strict=True):
        strategy.step(t, v)
        for head in strategy.heads.values():
            for layer in head.layers:
                assert len(layer.computed) == 1
                seen.add(layer.computed[0])
    assert len(seen) > 1  # the samples vary
    strategy.on_epoch(1, 2)
    assert strategy.tau == pytest.approx(0.1)


def test_random_genotypes_are_reproducible_with_a_seed():
    layers = {"projector": 6, "predictor": 4}
    a = sample_genotype(OPS, layers, np.random.default_rng(3))
    assert a == sample_genotype(OPS, layers, np.random.default_rng(3))
    assert a != sample_genotype(OPS, layers, np.random.default_rng(4))
    assert [len(a[h]) for h in layers] == [6, 4] and all(op in OPS for ops in a.values() for op in ops)


def test_head_from_a_genotype_holds_exactly_the_chosen_ops():
    ops = ["linear_silu", "avgpool_3x3", "identity", "linear_elu"]
    head = build_head(ops, Cell((32, 32, 32, 16, 64)))
    layer0, layer1, layer2, layer3 = head
    assert isinstance(layer0[2], nn.SiLU) and isinstance(layer0[1], nn.BatchNorm1d)
    assert isinstance(layer1[0], Pool1d) and isinstance(layer1[1], nn.BatchNorm1d) and len(layer1) == 2
    # identity on a shrinking layer: Linear -> BN -> ReLU in front of it
    assert [type(m) for m in layer2] == [nn.Linear, nn.BatchNorm1d, nn.ReLU]
    # linear op on a widening layer: a plain Linear with bias, no BN
    assert isinstance(layer3, nn.Linear) and layer3.bias is not None
    assert head(torch.randn(4, 32)).shape == (4, 64)


def _count_layer(op, d_in, d_out):
    """Parameters of one op, counted from the paper's rules (independently of the builder)."""
    if op.startswith("linear_"):
        return d_in * d_out + d_out if d_out > d_in else d_in * d_out + 2 * d_out
    reshape = 0 if d_in == d_out else (d_in * d_out + d_out if d_out > d_in else d_in * d_out + 2 * d_out)
    return reshape + (2 * d_out if op != "identity" else 0)


FEATURES = {"resnet18": 512, "resnet50": 2048}


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "nasiam_bench" / "catalogue" / "genotypes" / "*.toml"))))
def test_every_paper_genotype_builds_with_the_expected_parameter_count(path):
    genotype = load_genotype(path)
    d = FEATURES[genotype.backbone]
    framework = FRAMEWORKS.get(genotype.framework)
    heads = build_heads(genotype, framework.search_cells(d))
    layouts = {  # feature sizes through each cell, and the tail's parameters, as nasiam-genotypes.md describes
        "simsiam": {"projector": ([d] * 7, d * 2048 + 2048), "predictor": ([2048, 512, 512, 512, 2048], 0)},
        "moco": {"projector": ([d] * 5, d * 128 + 128)},
        "simclr": {"projector": ([d, 512, 512, 512, 512, 512, 128], 0)},
    }[genotype.framework]
    for name, (dims, tail) in layouts.items():
        ops = genotype.heads[name]
        expected = tail + sum(_count_layer(op, i, o) for op, i, o in zip(ops, dims[:-1], dims[1:], strict=True))
        assert sum(p.numel() for p in heads[name].parameters()) == expected, name
        out_dim = {"simsiam": 2048, "moco": 128, "simclr": 128}[genotype.framework]
        assert heads[name].eval()(torch.randn(4, dims[0])).shape == (4, out_dim)
    if genotype.framework == "simsiam" and genotype.backbone == "resnet18":
        assert sum(p.numel() for p in heads["projector"].parameters()) == 2_103_296  # worked by hand


def test_unknown_op_in_a_genotype_names_file_layer_and_valid_ops(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('framework = "moco"\n[heads]\nprojector = ["identity", "linear_rleu", "identity", "identity"]\n')
    with pytest.raises(
        GenotypeError,
        match=r"bad.toml: heads.projector layer 1: unknown op 'linear_rleu'; "
        r"valid: linear_celu, .*linear_relu, .*avgpool_3x3, maxpool_3x3",
    ):
        load_genotype(path)
    path.write_text('framework = "moco"\n[heads]\nprojector = ["identity"]\n')
    with pytest.raises(GenotypeError, match=r"heads.projector has 1 layers; this moco cell has 4"):
        build_heads(load_genotype(path), FRAMEWORKS.get("moco").search_cells(64))


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_cli_search_writes_a_genotype_that_pretrain_uses(framework, tmp_path, capsys):
    # the torch loader: what is tested is the genotype's way from search to pre-training to evaluation, not FFCV's
    common = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.loader=torch", "data.workers=0"]
    out = tmp_path / "search"
    assert main(["search", f"{framework}_cifar10", *common, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    genotype = load_genotype(out / "genotype.toml")
    assert genotype.framework == framework and f"projector: {', '.join(genotype.heads['projector'])}" in printed
    alpha = genotype.alpha["projector"]
    assert len(alpha["history"]) == 2 and len(alpha["final"]) == len(genotype.heads["projector"])
    assert (out / "alpha.png").stat().st_size > 1000
    summary = json.loads((out / "search.json").read_text())
    assert summary["strategy"] == "darts" and summary["steps"] > 0
    run = tmp_path / "run"
    assert (
        main(["pretrain", f"{framework}_cifar10", *common, f"head=genotype:{out / 'genotype.toml'}", "--out", str(run)])
        == 0
    )
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert state["genotype"] == genotype.heads
    assert main(["eval", str(run / "checkpoint.pt")]) == 0  # rebuilt with the genotype's heads


@pytest.mark.usefixtures("cifar10_data")
def test_random_search_is_reproducible_and_keeps_the_best(tmp_path):
    from nasiam_bench.search.run import run_search

    spec = load_spec(
        "simsiam_cifar10", ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "strategy=random", "data.train_subset=128"]
    )
    first, _ = run_search(spec, 0, tmp_path / "a", progress=False)
    second, _ = run_search(spec, 0, tmp_path / "b", progress=False)
    assert first.scores == second.scores  # the same candidates, the same scores
    assert len(first.scores) == spec.search.random_samples
    assert first.genotype == min(first.scores, key=lambda s: s["held_out_loss"])["genotype"]
    again, path = run_search(spec, 0, tmp_path / "a", progress=False)  # finished: read back, not run again
    assert again.genotype == first.genotype and path == tmp_path / "a" / "genotype.toml"


@pytest.mark.usefixtures("cifar10_data")
def test_paper_head_and_a_missing_one(tmp_path):
    from nasiam_bench.config.spec import SpecError
    from nasiam_bench.engine.train import pretrain

    spec = load_spec(
        "simsiam_cifar10", ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "head=paper", "data.train_subset=64"]
    )
    result = pretrain(spec, 0, tmp_path / "paper", progress=False)
    assert result.finished
    state = torch.load(result.checkpoint, weights_only=False)
    assert state["genotype"]["predictor"] == ["linear_hardswish", "avgpool_3x3", "avgpool_3x3", "linear_hardswish"]
    byol = load_spec("byol_cifar10", ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "head=paper"])
    with pytest.raises(
        SpecError,
        match=r"published no genotype for byol on cifar10 with resnet18; it did for: "
        r"moco_cifar100_resnet18",
    ):
        pretrain(byol, 0, tmp_path / "byol", progress=False)


GRADIENT_STRATEGIES = [
    name for name in SEARCH_STRATEGIES.list() if issubclass(SEARCH_STRATEGIES.get(name), GradientStrategy)
]


def _attached(framework, strategy, total_steps=8):
    model = _tiny_supernet(framework)
    searcher = SEARCH_STRATEGIES.get(strategy)()
    searcher.attach(model, load_spec(f"{framework}_cifar10", ["profile=smoke"]).search, total_steps, 16)
    searcher.on_epoch(0, 2)
    return model, searcher


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_gdas_draws_one_architecture_per_step_for_every_branch(framework):
    model, gdas = _attached(framework, "gdas")
    calls = []  # (online head, ops computed per layer) for every call of a searched head, copies included

    def record(head, inputs, output):
        online = head._leader[0] if head._leader else head
        calls.append((id(online), tuple(tuple(layer.computed) for layer in head.layers)))

    heads = [m for m in model.modules() if isinstance(m, SearchHead)]
    for head in heads:
        head.register_forward_hook(record)
    samples = set()
    for t, v in zip(_batches(n=3, seed=0), _batches(n=3, seed=1), strict=True):
        calls.clear()
        gdas.step(t, v)
        by_head = {}
        for online, ops in calls:
            by_head.setdefault(online, set()).add(ops)
        assert by_head.keys() == {id(h) for h in gdas.heads.values()}
        for ops in by_head.values():
            (chosen,) = ops  # both views, the predictor's two passes, the momentum copies, both passes of the step
            assert all(len(layer) == 1 for layer in chosen)  # one op per layer, copies included
            samples.add(chosen)
    assert len(samples) > len(gdas.heads)  # and a new sample each step


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_momentum_copies_of_a_darts_head_use_the_online_op_weights(framework):
    model, darts = _attached(framework, "darts")
    darts.step(*_batches(n=2))
    online = list(darts.heads.values())
    for head in (m for m in model.modules() if isinstance(m, SearchHead) and m not in online):
        (leader,) = head._leader  # every other searched head is a momentum copy that follows an online one
        assert any(leader is o for o in online)
        torch.testing.assert_close(head.op_weights().weights, torch.softmax(leader.alpha.detach(), dim=-1))


@pytest.mark.parametrize("strategy", GRADIENT_STRATEGIES)
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_architecture_step_changes_alpha_and_its_optimiser_only(framework, strategy):
    model, searcher = _attached(framework, strategy)
    searcher.step(*_batches(n=2, seed=0))  # the optimisers have state now
    alphas = {n for n, p in model.named_parameters() if n.endswith("alpha") and p.requires_grad}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight_state = copy.deepcopy(searcher.weight_optimizer.state_dict())
    arch_state = copy.deepcopy(searcher.arch_optimizer.state_dict())
    searcher.begin_step()
    searcher.arch_step(_batches(n=1, seed=2)[0])
    after = model.state_dict()
    for key, value in before.items():  # weights, BatchNorm statistics, queue, momentum encoders
        if key not in alphas:
            assert torch.equal(after[key], value), f"{framework} {strategy}: the architecture step changed {key}"
    assert any(not torch.equal(after[k], before[k]) for k in alphas)
    assert_identical(searcher.weight_optimizer.state_dict(), weight_state, "weight optimiser")
    assert not identical(searcher.arch_optimizer.state_dict(), arch_state)


@pytest.mark.parametrize("strategy", GRADIENT_STRATEGIES)
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_search_schedules_every_weight_group_but_the_fixed_ones(framework, strategy):
    _, searcher = _attached(framework, strategy, total_steps=4)
    start = [g["lr"] for g in searcher.weight_optimizer.param_groups]
    for t, v in zip(_batches(n=2, seed=0), _batches(n=2, seed=1), strict=True):
        searcher.step(t, v)
    fixed = set(FRAMEWORKS.get(framework).FIXED_LR_HEADS)
    for group, lr in zip(searcher.weight_optimizer.param_groups, start, strict=True):
        assert group["lr"] == lr if group.get("fixed_lr") else group["lr"] < lr
    assert sum(bool(g.get("fixed_lr")) for g in searcher.weight_optimizer.param_groups) == (1 if fixed else 0)


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_random_search_keeps_the_fixed_learning_rates_too(framework, monkeypatch):
    import nasiam_bench.search.random as random_search

    seen = []

    def step(model, view1, view2, optimizer, scheduler, progress, use_amp=False):
        optimizer.step()
        scheduler.step()
        seen.append([(bool(g.get("fixed_lr")), g["lr"]) for g in optimizer.param_groups])
        return {"loss": torch.tensor(1.0)}

    class Loader(list):
        def set_epoch(self, epoch):
            pass

    monkeypatch.setattr(random_search, "train_step", step)
    spec = load_spec(f"{framework}_cifar10", ["profile=smoke"])
    loader = Loader((v1, v2, None) for v1, v2 in _batches(n=3))
    ctx = types.SimpleNamespace(search=spec.search, train_loader=loader, progress=False, amp=False, device=None)
    model = FRAMEWORKS.get(framework)(build_backbone("resnet18", width=0.125), options=TINY)
    random_search.RandomSearch._train(model, ctx, "x", random_search._DeviceTime())
    for (fixed, first), (_, last) in zip(seen[0], seen[-1], strict=True):
        assert last == first if fixed else last < first
    assert any(fixed for fixed, _ in seen[0]) == bool(FRAMEWORKS.get(framework).FIXED_LR_HEADS)


@pytest.mark.usefixtures("cifar10_data")
def test_searches_report_compares_variants_over_seeds(tmp_path, capsys):
    report = tmp_path / "results" / "quirk.md"
    common = ["moco_cifar10", "profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=128"]
    variants = ["--variant", "plain:", "--variant", "quirk:search.paper_bn_eps_quirk=true"]
    where = ["--runs", str(tmp_path / "runs"), "--report", str(report), "--command-line", "make quirk"]
    assert main(["searches", *common, "--seeds", "2", *variants, *where]) == 0
    text = report.read_text()
    assert "Regenerate: `make quirk`" in text
    for variant in ("plain", "quirk"):
        for seed in (0, 1):
            assert f"| {variant} | {seed} | projector |" in text
            assert (tmp_path / "results" / "plots" / f"quirk_{variant}_seed{seed}.png").stat().st_size > 1000
        assert f"- {variant}: mean " in text and "over 2 seeds" in text
    assert text.count("| plain | projector |") == 4  # a final-alpha row per layer
    searched = sorted(p.parent.parent.name for p in (tmp_path / "runs").rglob("genotype.toml"))
    assert len(searched) == 4 and len(set(searched)) == 2  # two specs (the quirk is in the search id), two seeds
    capsys.readouterr()
    assert main(["searches", *common, "--variant", "no-colon", *where]) == 2
    assert "expected LABEL:key=value" in capsys.readouterr().err


@pytest.mark.parametrize("strategy", GRADIENT_STRATEGIES)
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_a_search_step_trains_alpha_and_the_weights(framework, strategy):
    model, searcher = _attached(framework, strategy)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for t, v in zip(_batches(n=2, seed=0), _batches(n=2, seed=1), strict=True):
        searcher.step(t, v)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert {n for n in before if n.endswith("alpha")} <= moved, f"{strategy}: alpha did not learn"
    assert any(n.startswith("backbone.") for n in moved), f"{strategy}: the backbone did not learn"


@pytest.mark.parametrize("strategy", GRADIENT_STRATEGIES)
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_backbone_passes_per_search_step(framework, strategy):
    """Bilevel: the online views once without autograd (alpha) and once with it (weights); single-level: once."""
    model, searcher = _attached(framework, strategy)
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    searcher.step(*_batches(n=2))
    views = [True] * model.online_views
    assert calls == ([False] * model.online_views + views if searcher.held_out else views)


@pytest.mark.parametrize("strategy", [s for s in GRADIENT_STRATEGIES if not SEARCH_STRATEGIES.get(s).held_out])
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_a_single_level_search_never_reads_the_held_out_batch(framework, strategy):
    results = []
    for val_seed in (1, 2):
        model, searcher = _attached(framework, strategy)
        searcher.step(_batches(n=1, seed=0)[0], _batches(n=1, seed=val_seed)[0])
        results.append(model.state_dict())
    for key, value in results[0].items():
        assert torch.equal(value, results[1][key]), key


def test_beta_decay_loss_has_the_softmax_as_its_gradient():
    from nasiam_bench.search.beta_darts import beta_decay_loss

    alphas = [torch.randn(3, 7, dtype=torch.float64, requires_grad=True), torch.randn(2, 7, dtype=torch.float64)]
    alphas[1].requires_grad_(True)
    loss = beta_decay_loss(alphas)
    torch.testing.assert_close(loss, torch.cat([a.logsumexp(-1) for a in alphas]).mean())
    loss.backward()
    for alpha in alphas:  # mean over the 5 rows: each row's gradient is its softmax / 5
        torch.testing.assert_close(alpha.grad, torch.softmax(alpha.detach(), -1) / 5)


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_beta_darts_is_darts_plus_a_penalty_that_grows_from_zero(framework):
    models, searchers = zip(*(_attached(framework, s, total_steps=4) for s in ("darts", "beta_darts")), strict=True)
    assert searchers[1].arch_penalty() == 0  # λ starts at 0: the first step is a darts step
    train, val = _batches(n=1, seed=0)[0], _batches(n=1, seed=1)[0]
    for searcher in searchers:
        searcher.step(train, val)
    for key, value in models[0].state_dict().items():
        torch.testing.assert_close(models[1].state_dict()[key], value)
    alphas = [h.alpha for h in searchers[1].heads.values()]
    from nasiam_bench.search.beta_darts import beta_decay_loss

    expected = searchers[1].beta_decay * (1 / 4) * beta_decay_loss(alphas)
    torch.testing.assert_close(searchers[1].arch_penalty(), expected)


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_beta_decay_keeps_the_op_weights_flatter_than_darts(framework):
    spreads = {}
    for strategy, decay in (("darts", 0.0), ("beta_darts", 200.0)):
        model = _tiny_supernet(framework)
        searcher = SEARCH_STRATEGIES.get(strategy)()
        overrides = ["profile=smoke", "search.arch_lr=0.05", f"search.beta_decay={decay}"]
        spec = load_spec(f"{framework}_cifar10", overrides)
        searcher.attach(model, spec.search, total_steps=6, batch_size=16)
        for t, v in zip(_batches(n=6, seed=0), _batches(n=6, seed=1), strict=True):
            searcher.step(t, v)
        weights = torch.cat([torch.softmax(h.alpha.detach(), -1) for h in searcher.heads.values()])
        spreads[strategy] = (weights.max(-1).values - weights.min(-1).values).mean().item()
    assert spreads["beta_darts"] < spreads["darts"]
