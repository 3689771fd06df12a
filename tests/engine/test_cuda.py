"""The CUDA path: pre-training under bf16 autocast with FFCV's transfer to the device and the augmentation there,
torch.compile, and checkpoints that load on the CPU. Skipped without a GPU; `make test-gpu` runs them."""

import pytest
import torch

from nasiam_bench.config.spec import load_spec
from nasiam_bench.core.compile import compile_model
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.data.loaders import LoaderConfig, ssl_loader
from nasiam_bench.engine.train import pretrain
from nasiam_bench.models.build import build_model
from nasiam_bench.search.base import GradientStrategy
from nasiam_bench.store.checkpoints import load_checkpoint, model_from_checkpoint
from tests.conftest import TEST_DATA_ROOT

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("cifar10_data")]


def smoke(framework, *overrides):
    base = ["profile=smoke", f"experiment.framework={framework}", f"data.root={TEST_DATA_ROOT}"]
    return load_spec("moco_cifar10", [*base, *overrides])


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_pretraining_on_cuda_with_bf16_gives_a_checkpoint_the_cpu_reads(framework, tmp_path):
    result = pretrain(smoke(framework, "train.epochs=2"), 0, tmp_path, device="cuda", progress=False)
    assert result.finished and result.device == torch.cuda.get_device_name()
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)
    assert result.peak_memory_mb > 0
    _, model = model_from_checkpoint(load_checkpoint(tmp_path / "checkpoint.pt"))
    assert next(model.parameters()).device.type == "cpu"


def test_the_device_loader_draws_the_augmentations_the_cpu_loader_draws(cifar10_data, cifar10_subset):
    # The draws are a function of (seed, epoch, step, position), not of the device: the views agree up to the
    # rounding of the device's kernels.
    views = {}
    for device in ("cpu", "cuda"):
        config = LoaderConfig(batch_size=64, image_size=32, seed=3, workers=2, device=device)
        loader = ssl_loader(cifar10_data, "train", config, cifar10_subset)
        loader.set_epoch(1)
        v1, v2, labels = next(iter(loader))
        assert v1.device.type == device and v1.dtype == torch.float32
        views[device] = (v1.cpu(), v2.cpu(), labels.cpu())
    assert torch.equal(views["cpu"][2], views["cuda"][2])
    for cpu, cuda in zip(views["cpu"][:2], views["cuda"][:2], strict=True):
        assert (cpu - cuda).abs().max() < 1e-3


def test_the_side_stream_prefetch_gives_the_batches_the_training_stream_would(cifar10_data, cifar10_subset):
    config = LoaderConfig(batch_size=64, image_size=32, seed=3, workers=2, device="cuda")
    epochs = {}
    for prefetch in (False, True):
        loader = ssl_loader(cifar10_data, "train", config, cifar10_subset)
        loader._prefetch = prefetch
        loader.set_epoch(1)
        epochs[prefetch] = [tuple(t.cpu() for t in batch) for batch in loader]
        assert loader.prefetch == prefetch
    assert len(epochs[True]) == len(epochs[False]) > 1
    for plain, ahead in zip(epochs[False], epochs[True], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(plain, ahead, strict=True))


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_a_compiled_model_computes_the_loss_of_the_uncompiled_one(framework):
    spec = smoke(framework)
    torch.manual_seed(0)
    eager = build_model(spec).cuda().eval()
    torch.manual_seed(0)
    compiled = compile_model(build_model(spec).cuda().eval())
    assert eager.state_dict().keys() == compiled.state_dict().keys()
    g = torch.Generator(device="cuda").manual_seed(0)
    v1, v2 = (torch.randn(32, 3, 32, 32, device="cuda", generator=g) for _ in range(2))
    with torch.no_grad():
        a, b = eager(v1, v2)["loss"], compiled(v1, v2)["loss"]
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "strategy",
    [s for s in SEARCH_STRATEGIES.list() if issubclass(SEARCH_STRATEGIES.get(s), GradientStrategy)],
)
def test_a_search_on_cuda_runs_its_forward_passes_under_bf16_as_pre_training(strategy, tmp_path, monkeypatch):
    from nasiam_bench.search.run import run_search

    seen = []
    real = GradientStrategy.step

    def watched(self, *args, **kwargs):
        hook = self.model.backbone.register_forward_hook(
            lambda m, i, o: seen.append((torch.is_autocast_enabled("cuda"), o.dtype))
        )
        try:
            return real(self, *args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(GradientStrategy, "step", watched)
    spec = smoke("moco", f"strategy={strategy}", "search.epochs=1")
    result, _ = run_search(spec, 0, tmp_path, device="cuda", progress=False)
    assert result.genotype is not None and seen
    assert all(enabled and dtype == torch.bfloat16 for enabled, dtype in seen)
