"""Loaders built from a spec: two augmented views for SSL training, plain images for kNN and linear probing.

``data.loader = "ffcv"`` (default) reads the prepared .beton with FFCV: it decodes each image once, moves the uint8
batch to the device without blocking, and augments both views there as batched tensor ops (``augment.py``).
``data.loader = "torch"`` is the reference: the same recipe with torchvision transforms over PIL images in a torch
``DataLoader``, read from the source tree; it is the comparison point for speed and the fallback where FFCV cannot
be installed. Both yield ``(view1, view2, labels)`` or ``(images, labels)`` and are seeded: the same seed gives the
same batches, whatever ``data.workers`` is (the torch loader seeds each sample's draws by seed, epoch and sample).

FFCV compiles each pipeline with numba when a loader is built; a built loader is kept and reused in the process
(``_BUILT``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nasiam_bench.data.augment import Normalize, TwoViewAugment
from nasiam_bench.data.datasets import CifarSource, DataError, FolderSource
from nasiam_bench.data.ffcv_support import loader_kind
from nasiam_bench.data.prepare import PreparedDataset

# FFCV sets torch's intra-op thread count to its own worker count (to 1 on import); training wants them all back.
TORCH_THREADS = torch.get_num_threads()
EVAL_CROP_RATIO = 224 / 256  # resize to size/ratio, centre-crop size: the usual ImageNet evaluation
TRAIN_DECODE_RATIO = 256 / 224  # variable-size images are decoded to a centre square this much above the crop


@dataclass(frozen=True)
class LoaderConfig:
    """What a loader needs beyond the dataset; built from a spec's [data] and [train] sections."""

    batch_size: int
    image_size: int
    seed: int = 0
    workers: int = 2
    kind: str = "ffcv"
    device: str = "cpu"
    distributed: bool = False
    crop_scale: tuple[float, float] = (0.2, 1.0)

    @classmethod
    def from_spec(cls, spec, seed: int, batch_size: int, device, distributed: bool = False) -> LoaderConfig:
        """The loader settings of a spec's ``[data]`` section, with a phase's batch size and device."""
        d = spec.data
        return cls(
            batch_size=batch_size,
            image_size=d.image_size,
            seed=seed,
            workers=d.workers,
            kind=d.loader,
            device=str(device),
            distributed=distributed,
            crop_scale=tuple(d.crop_scale),
        )


def _device(name: str) -> torch.device:
    return torch.device(name)


def _process(config: LoaderConfig) -> tuple[int, int]:
    """(rank, world size) of this process among those sharing the loader's global batch."""
    if not config.distributed:
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


class SSLLoader:
    """Iterates ``(view1, view2, labels)`` over one split (or a subset of it), an epoch per ``iter``.

    The augmentation of the j-th sample of the global batch at a step is a function of (seed, epoch, step, j): this
    process augments the samples ``rank * b`` to ``(rank + 1) * b`` of the ``world_size * b`` of that step.
    """

    def __init__(
        self,
        batches,
        augment: TwoViewAugment,
        seed: int,
        device: torch.device,
        length: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self._batches, self.augment, self.seed, self.device = batches, augment.to(device), seed, device
        self._length, self.rank, self.world_size = length, rank, world_size
        self.epoch = 0

    def __len__(self) -> int:
        return self._length

    def set_epoch(self, epoch: int) -> None:
        """Which epoch the next ``iter`` is (to resume a run with the batches it would have seen)."""
        self.epoch = epoch
        batches = self._batches
        if hasattr(batches, "next_epoch"):  # FFCV: its order is seeded by (seed, epoch)
            batches.next_epoch = epoch
        else:  # torch: the order and every sample's draws are seeded by (seed, epoch, sample)
            batches.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        self.set_epoch(self.epoch)
        views = self._views()
        yield from (_prefetched(views, self.device) if self.prefetch else views)
        self.epoch += 1

    @property
    def prefetch(self) -> bool:
        """On CUDA the next batch is made on a side stream while the current one trains (the draws are the same)."""
        return self.device.type == "cuda" and self._prefetch

    _prefetch = True  # a test turns it off to compare

    def _views(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for step, (images, labels) in enumerate(_iterate(self._batches)):
            images = images.to(self.device, non_blocking=True)
            labels = _own(labels.to(self.device, non_blocking=True).view(-1))
            if images.dtype == torch.uint8:  # FFCV: augment the decoded batch here
                generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch, step))
                n = len(images)
                view1, view2 = self.augment(images, generator, self.rank * n, self.world_size * n)
            else:  # torch reference: already two augmented views
                view1, view2 = images.unbind(1)
            yield view1, view2, labels


def _prefetched(
    batches: Iterator[tuple[torch.Tensor, ...]], device: torch.device
) -> Iterator[tuple[torch.Tensor, ...]]:
    """``batches`` one ahead: each is moved and augmented on a side CUDA stream, queued before the current batch
    is handed over, so that its kernels run beside the training step's; the training stream waits on an event for
    it only when it is used."""
    side, used = torch.cuda.Stream(device), torch.cuda.current_stream(device)

    def make():
        with torch.cuda.stream(side):
            batch = next(batches, None)
        if batch is None:
            return None
        ready = torch.cuda.Event()
        ready.record(side)
        return batch, ready

    ahead = make()
    while ahead is not None:
        batch, ready = ahead
        used.wait_event(ready)
        for tensor in batch:
            tensor.record_stream(used)  # its memory is not reused while the training stream may still read it
        ahead = make()
        yield batch


class EvalLoader:
    """Iterates ``(images, labels)``: resized and centre-cropped, normalised, in a fixed order."""

    def __init__(self, batches, normalize: nn.Module, device: torch.device, length: int) -> None:
        self._batches, self.normalize, self.device, self._length = batches, normalize.to(device), device, length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in _iterate(self._batches):
            images = images.to(self.device, non_blocking=True)
            labels = _own(labels.to(self.device, non_blocking=True).view(-1))
            yield (self.normalize(images) if images.dtype == torch.uint8 else _own(images)), labels


def _own(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor the caller may keep: FFCV reuses its batch buffers a few batches later."""
    return tensor.clone()


def _iterate(batches):
    """Iterate a loader, restoring torch's thread count after FFCV has set it."""
    iterator = iter(batches)
    torch.set_num_threads(TORCH_THREADS)
    return iterator


def _mix(*keys: int) -> int:
    """A 63-bit seed from several integers, well spread (NumPy's SeedSequence hash)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> 1)


def ssl_loader(data: PreparedDataset, split: str, config: LoaderConfig, indices: np.ndarray | None = None) -> SSLLoader:
    """The two-view training loader over ``split`` (restricted to ``indices`` when given)."""
    info = data.info
    augment = TwoViewAugment(config.image_size, info.mean, info.std, blur=info.blur, scale=config.crop_scale)
    device = _device(config.device)
    config = dataclasses.replace(config, kind=loader_kind(config.kind))
    if config.kind == "ffcv":
        batches = _ffcv_loader(data, split, config, indices, train=True)
        length = len(batches)
    elif config.kind == "torch":
        batches = _torch_loader(
            data,
            split,
            config,
            indices,
            transform=_torch_two_view(info, config.image_size, config.crop_scale),
            train=True,
        )
        length = len(batches)
    else:
        raise DataError(f"data.loader = {config.kind!r}; valid: ffcv, torch")
    return SSLLoader(batches, augment, config.seed, device, length, *_process(config))


def eval_loader(
    data: PreparedDataset, split: str, config: LoaderConfig, indices: np.ndarray | None = None
) -> EvalLoader:
    """The evaluation loader (kNN bank and queries, linear probe) over ``split``, in order, keeping every image."""
    normalize = Normalize(data.info.mean, data.info.std)
    config = dataclasses.replace(config, kind=loader_kind(config.kind))
    if config.kind == "ffcv":
        batches = _ffcv_loader(data, split, config, indices, train=False)
    elif config.kind == "torch":
        batches = _torch_loader(
            data, split, config, indices, transform=_torch_eval(data, config.image_size), train=False
        )
    else:
        raise DataError(f"data.loader = {config.kind!r}; valid: ffcv, torch")
    return EvalLoader(batches, normalize, _device(config.device), len(batches))


# -------------------------------------------------------------------------------------------------------- FFCV


# Built FFCV loaders kept for reuse in this process, newest last. Building one compiles its reader and pipeline with
# numba (1-3 s on a small CPU) and a run builds several (training, kNN bank and queries, the search's halves); the
# loaders of a bench's runs, and of a resumed run, are the same. A loader holds no state between epochs but its
# epoch counter, which SSLLoader sets before each epoch (each epoch gets its own buffers and order), so a kept one
# yields what a new one would.
_BUILT: OrderedDict[tuple, object] = OrderedDict()
KEPT_LOADERS = 8


def _ffcv_loader(data: PreparedDataset, split: str, config: LoaderConfig, indices: np.ndarray | None, train: bool):
    files = data.check_beton(split)
    subset = None if indices is None else np.sort(np.asarray(indices, dtype=np.int64))
    if subset is not None and (subset.min(initial=0) < 0 or subset.max(initial=0) >= files.count):
        raise DataError(f"{files.beton}: subset index out of range [0, {files.count})")
    stat = files.beton.stat()
    key = (
        str(files.beton.resolve()),
        (stat.st_ino, stat.st_size, stat.st_mtime_ns),  # a rewritten .beton is another loader
        dataclasses.replace(config, kind="ffcv", crop_scale=(0.0, 0.0)),  # the crop is the augmentation's
        _process(config),
        train,
        None if subset is None else hashlib.sha256(subset.tobytes()).hexdigest(),
    )
    loader = _BUILT.pop(key, None) or _build_ffcv_loader(str(files.beton), config, subset, train)
    _BUILT[key] = loader
    while len(_BUILT) > KEPT_LOADERS:
        _BUILT.popitem(last=False)
    return loader


def _build_ffcv_loader(beton: str, config: LoaderConfig, subset: np.ndarray | None, train: bool):
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.reader import Reader
    from ffcv.transforms import Squeeze, ToDevice, ToTensor, ToTorchImage

    meta = Reader(beton).metadata["f0"]
    heights, widths = meta["height"], meta["width"]
    size = config.image_size
    uniform = heights.min() == heights.max() == widths.min() == widths.max()
    if uniform and heights[0] == size:
        decoder = SimpleRGBImageDecoder()  # CIFAR: every image already at the training size
    elif train:
        decoder = CenterCropRGBImageDecoder((round(size * TRAIN_DECODE_RATIO),) * 2, ratio=1.0)
    else:
        decoder = CenterCropRGBImageDecoder((size, size), ratio=EVAL_CROP_RATIO)
    device = _device(config.device)
    to_device = [ToDevice(device, non_blocking=True)] if device.type == "cuda" else []
    pipelines = {
        "image": [decoder, ToTensor(), ToTorchImage(), *to_device],
        "label": [IntDecoder(), ToTensor(), Squeeze(), *to_device],
    }
    return Loader(
        beton,
        batch_size=config.batch_size,
        num_workers=max(1, config.workers),
        order=OrderOption.RANDOM if train else OrderOption.SEQUENTIAL,
        seed=config.seed,
        indices=subset,
        pipelines=pipelines,
        drop_last=train,
        distributed=config.distributed,
        os_cache=True,
    )


# --------------------------------------------------------------------------------------------- torch reference


class _SourceDataset(torch.utils.data.Dataset):
    """The split's images as torchvision reads them, in the order and with the skips of the .beton (restricted to
    ``indices`` when given). An item asked for as ``(position, sample_seed)`` is augmented with torch's generator
    seeded by ``sample_seed`` (and the caller's generator left as it was), so that its draws depend on the seed,
    the epoch and the sample only: not on the worker that reads it, nor on how many workers there are."""

    def __init__(self, data: PreparedDataset, split: str, transform, indices: np.ndarray | None = None) -> None:
        tree = data.tree
        if tree is None or not tree.exists():
            raise DataError(
                f"{data.folder}: the source tree {tree} is gone; the torch loader reads it "
                f'(prepare again, or use data.loader = "ffcv")'
            )
        cifar = data.info.cifar
        self.images = CifarSource(tree, cifar) if cifar and (tree / cifar.meta_file).is_file() else FolderSource(tree)
        entry = data.meta["splits"][split]
        skipped = set(entry.get("skipped_items", []))
        source_split = entry.get("source_split", split)  # the held-out split lives in the source's train/
        self.samples = [s for s in self.images.samples(source_split) if self.images.describe(s[0]) not in skipped]
        if entry.get("positions"):
            self.samples = [self.samples[i] for i in np.load(data.folder / entry["positions"])]
        if len(self.samples) != data.split(split).count:
            raise DataError(
                f"{tree}: {split} holds {len(self.samples)} readable images now, "
                f"{data.split(split).count} when prepared; prepare again"
            )
        self.indices = np.arange(len(self.samples)) if indices is None else np.sort(np.asarray(indices))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]):
        from PIL import Image

        position, sample_seed = key if isinstance(key, tuple) else (key, None)
        item, label = self.samples[self.indices[position]]
        image = Image.fromarray(self.images.read(item))
        if sample_seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            return self.transform(image), label


class _SeededSampler(torch.utils.data.Sampler):
    """The training order of the torch loader: a permutation seeded by (seed, epoch), this process's share of it
    (every ``world_size``-th, the tail that does not split evenly left out), each position paired with its
    sample's seed, ``_mix(seed, epoch, sample)``."""

    def __init__(self, dataset: _SourceDataset, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.dataset, self.seed, self.rank, self.world_size = dataset, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset) // self.world_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        mine = order[self.rank : len(self) * self.world_size : self.world_size]
        samples = self.dataset.indices
        return iter([(p, _mix(self.seed, self.epoch, int(samples[p]))) for p in mine])


def _torch_loader(
    data: PreparedDataset, split: str, config: LoaderConfig, indices: np.ndarray | None, transform, train: bool
) -> torch.utils.data.DataLoader:
    from torch.utils.data import DataLoader

    dataset = _SourceDataset(data, split, transform, indices)
    sampler = _SeededSampler(dataset, config.seed, *_process(config)) if train else None
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        drop_last=train,
        # its own generator: a DataLoader draws its workers' base seed from the global one otherwise, once per
        # iterator, so a resumed run (a new iterator) would draw once more than an uninterrupted one
        generator=torch.Generator().manual_seed(config.seed),
        pin_memory=config.device.startswith("cuda"),
        persistent_workers=config.workers > 0,
    )


def _torch_two_view(info, size: int, scale: tuple[float, float]):
    from torchvision import transforms as T

    steps = [
        T.RandomResizedCrop(size, scale=scale),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    if info.blur:
        sigma = (0.1 * size / 224, 2.0 * size / 224)
        steps.append(T.RandomApply([T.GaussianBlur(2 * max(1, round(3 * sigma[1])) + 1, sigma)], p=0.5))
    steps += [T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(info.mean, info.std)]
    one = T.Compose(steps)
    return lambda image: torch.stack([one(image), one(image)])


def _torch_eval(data: PreparedDataset, size: int):
    from torchvision import transforms as T

    resize = [] if data.info.store_raw else [T.Resize(round(size / EVAL_CROP_RATIO)), T.CenterCrop(size)]
    return T.Compose([*resize, T.ToTensor(), T.Normalize(data.info.mean, data.info.std)])
