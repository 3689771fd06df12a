import dataclasses
import json
import os
import tarfile
import warnings

import numpy as np
import pytest
import torch

from nasiam_bench.cli import main
from nasiam_bench.core.registry import UnknownEntryError
from nasiam_bench.data.datasets import DataError
from nasiam_bench.data.loaders import LoaderConfig, eval_loader, ssl_loader
from nasiam_bench.data.prepare import CorruptImageWarning, open_prepared, prepare
from nasiam_bench.data.splits import search_halves, stratified_subset
from tests.data_fixtures import make_archive, make_tree, write_cifar100


def read_beton(path):
    """Every (image, label) of a .beton in stored order, through FFCV itself."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor

    loader = Loader(
        str(path),
        batch_size=64,
        num_workers=1,
        order=OrderOption.SEQUENTIAL,
        drop_last=False,
        pipelines={"image": [SimpleRGBImageDecoder(), ToTensor()], "label": [IntDecoder(), ToTensor()]},
    )
    images, labels = zip(*((x.numpy(), y.numpy().ravel()) for x, y in loader), strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_prepare_imagefolder_tree_round_trips_counts_and_labels(tmp_path):
    tree = make_tree(tmp_path / "src")
    data = prepare("imagefolder", tree, root=tmp_path / "data", workers=1)
    assert data.classes == ["ant", "bee", "cat"]
    assert data.split("train").count == 18 and data.split("val").count == 6
    assert data.eval_split == "val"
    np.testing.assert_array_equal(data.labels("train"), np.repeat([0, 1, 2], 6))
    assert data.check_beton("train").count == 18
    loader = eval_loader(data, "val", LoaderConfig(batch_size=4, image_size=16, workers=1))
    images, labels = zip(*loader, strict=True)
    assert torch.cat(labels).tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.cat(images).shape == (6, 3, 16, 16)


def test_prepare_from_archive_and_skip_when_up_to_date(tmp_path, capsys):
    make_tree(tmp_path / "tree" / "tiny", per_split={"train": 4, "test": 2})
    archive = make_archive(tmp_path / "tree", tmp_path / "tiny.tar.gz")
    data = prepare("imagefolder", archive, root=tmp_path / "data", workers=1)
    assert {s: data.split(s).count for s in ("train", "test")} == {"train": 12, "test": 6}
    assert data.eval_split == "test" and data.tree.name == "tiny"
    beton = data.split("train").beton
    stamp = beton.stat().st_mtime_ns
    capsys.readouterr()
    again = prepare("imagefolder", archive, root=tmp_path / "data", workers=1)
    assert "up to date" in capsys.readouterr().out
    assert beton.stat().st_mtime_ns == stamp and again.meta == data.meta
    prepare("imagefolder", archive, root=tmp_path / "data", workers=1, force=True)
    assert beton.stat().st_mtime_ns != stamp


def test_cifar100_in_torchvisions_format(tmp_path, monkeypatch):
    _folder, arrays = write_cifar100(tmp_path / "download")
    # Our writer of the format agrees with torchvision's reader of it (its checksum check is for the real files).
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    reference = torchvision.datasets.CIFAR100(str(tmp_path / "download"), train=True)
    np.testing.assert_array_equal(reference.data, arrays["train"][0])

    data = prepare("cifar100", tmp_path / "download", root=tmp_path / "data", workers=1)
    assert len(data.classes) == 100 and data.classes[3] == "class03"
    images, labels = read_beton(data.split("train").beton)
    np.testing.assert_array_equal(images, arrays["train"][0])  # raw storage: pixel-exact
    np.testing.assert_array_equal(labels, arrays["train"][1])
    np.testing.assert_array_equal(data.labels("test"), arrays["test"][1])


def test_real_cifar10_archive_counts(cifar10_data):
    assert cifar10_data.split("train").count == 50_000 and cifar10_data.split("test").count == 10_000
    assert np.bincount(cifar10_data.labels("train")).tolist() == [5000] * 10
    assert cifar10_data.classes[0] == "airplane" and cifar10_data.check_beton("test").count == 10_000


def test_two_views_differ_and_are_normalised(cifar10_ssl_loader):
    view1, view2, labels = next(iter(cifar10_ssl_loader))
    assert view1.shape == view2.shape == (128, 3, 32, 32)
    assert view1.dtype == torch.float32 and labels.dtype == torch.int64 and labels.shape == (128,)
    assert not torch.equal(view1, view2)
    assert (view1 - view2).abs().mean(dim=(1, 2, 3)).min() > 0  # every pair differs
    both = torch.cat([view1, view2])
    assert abs(both.mean().item()) < 0.3 and 0.7 < both.std().item() < 1.3  # dataset statistics standardise


def test_same_seed_same_batches(cifar10_data, cifar10_subset, cifar10_ssl_loader):
    config = LoaderConfig(batch_size=128, image_size=32, seed=0, workers=2)
    twin = ssl_loader(cifar10_data, "train", config, cifar10_subset)
    cifar10_ssl_loader.set_epoch(3)
    twin.set_epoch(3)
    a, b = next(iter(cifar10_ssl_loader)), next(iter(twin))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    cifar10_ssl_loader.set_epoch(4)
    assert not torch.equal(next(iter(cifar10_ssl_loader))[0], a[0])  # another epoch, other batches


def test_a_kept_ffcv_loader_yields_what_a_newly_built_one_yields(cifar10_data, cifar10_subset, monkeypatch):
    from collections import OrderedDict

    from nasiam_bench.data import loaders

    config = LoaderConfig(batch_size=64, image_size=32, seed=5, workers=1)
    kept = ssl_loader(cifar10_data, "train", config, cifar10_subset[:256])
    kept.set_epoch(2)
    next(iter(kept))  # an epoch left half-read, as a killed run leaves it
    again = ssl_loader(cifar10_data, "train", config, cifar10_subset[:256])
    assert again._batches is kept._batches  # the same settings: reused, not compiled again
    monkeypatch.setattr(loaders, "_BUILT", OrderedDict())
    new = ssl_loader(cifar10_data, "train", config, cifar10_subset[:256])
    assert new._batches is not kept._batches
    for loader in (again, new):
        loader.set_epoch(2)
    for a, b in zip(again, new, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
    other = ssl_loader(cifar10_data, "train", dataclasses.replace(config, seed=6), cifar10_subset[:256])
    assert other._batches is not new._batches  # another seed, another order


def test_torch_reference_loader_matches_recipe_shapes(cifar10_data, cifar10_subset):
    config = LoaderConfig(batch_size=64, image_size=32, seed=0, workers=0, kind="torch")
    view1, view2, _labels = next(iter(ssl_loader(cifar10_data, "train", config, cifar10_subset[:128])))
    assert view1.shape == (64, 3, 32, 32) and not torch.equal(view1, view2)
    ffcv_eval = next(iter(eval_loader(cifar10_data, "test", LoaderConfig(batch_size=32, image_size=32, workers=1))))
    torch_eval = next(iter(eval_loader(cifar10_data, "test", config)))
    torch.testing.assert_close(ffcv_eval[0], torch_eval[0][:32])  # the same pixels, the same normalisation
    assert torch.equal(ffcv_eval[1], torch_eval[1][:32])


def test_stratified_subset_and_disjoint_halves():
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    subset = stratified_subset(labels, 100, seed=1)
    assert len(subset) == 100 and len(np.unique(subset)) == 100
    assert np.bincount(labels[subset]).tolist() == [10, 20, 30, 40]
    np.testing.assert_array_equal(subset, stratified_subset(labels, 100, seed=1))
    assert not np.array_equal(subset, stratified_subset(labels, 100, seed=2))
    first, second = search_halves(labels, subset, seed=0)
    assert len(np.intersect1d(first, second)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([first, second])), subset)
    assert np.bincount(labels[first]).tolist() == [5, 10, 15, 20]
    assert len(stratified_subset(labels, 0, seed=0)) == 1000


# Bad input: a clear error naming the file and what was expected; corrupt images skipped with a warning, counted.


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match=r"source .*nowhere does not exist"):
        prepare("cifar10", tmp_path / "nowhere", root=tmp_path / "data")
    with pytest.raises(DataError, match=r"give --source PATH .* or --download"):
        prepare("cifar10", None, root=tmp_path / "data")


def test_archive_that_is_not_an_imagefolder_tree(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(b"x")
    archive = tmp_path / "flat.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(flat / "a.jpg", arcname="a.jpg")
    with pytest.raises(DataError, match=r"flat.tar: not an ImageFolder tree; expected <root>/<split>/<class>/<image>"):
        prepare("imagefolder", archive, root=tmp_path / "data")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match=r"junk.tar.gz: cannot extract"):
        prepare("imagefolder", tmp_path / "junk.tar.gz", root=tmp_path / "data")


def test_corrupt_image_is_skipped_with_a_warning_and_counted(tmp_path):
    tree = make_tree(tmp_path / "src", fmt="jpg")
    victim = tree / "train" / "bee" / "001.jpg"
    victim.write_bytes(victim.read_bytes()[:40])  # truncated
    (tree / "train" / "cat" / "002.jpg").write_bytes(b"not an image at all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = prepare("imagefolder", tree, root=tmp_path / "data", workers=2)
    messages = [str(w.message) for w in caught if issubclass(w.category, CorruptImageWarning)]
    assert len(messages) == 2 and any("001.jpg" in m for m in messages)
    assert data.split("train").count == 16 and data.meta["splits"]["train"]["skipped"] == 2
    assert np.bincount(data.labels("train")).tolist() == [6, 5, 5]


def test_beton_whose_count_disagrees(tmp_path):
    data = prepare("imagefolder", make_tree(tmp_path / "src"), root=tmp_path / "data", workers=1)
    meta_path = data.folder / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["splits"]["train"]["count"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"train.beton: holds 18 images, but meta.json says 99"):
        open_prepared("imagefolder", tmp_path / "data").check_beton("train")
    os.remove(data.split("val").beton)
    with pytest.raises(DataError, match=r"val.beton: missing"):
        open_prepared("imagefolder", tmp_path / "data").check_beton("val")


def test_unknown_dataset_and_unprepared(tmp_path):
    with pytest.raises(UnknownEntryError, match="did you mean 'cifar10'"):
        prepare("cifar01", tmp_path)
    with pytest.raises(DataError, match=r"meta.json: not found; prepare the data first"):
        open_prepared("cifar100", tmp_path / "empty")


def test_download_is_for_cifar_only(tmp_path):
    with pytest.raises(DataError, match=r"torchvision downloads cifar10 and cifar100 only, not imagenet"):
        prepare("imagenet", download=True, root=tmp_path)


def test_cli_data_prepare(tmp_path, capsys):
    tree = make_tree(tmp_path / "src")
    assert (
        main(["data", "prepare", "imagefolder", "--source", str(tree), "--root", str(tmp_path / "d"), "--workers", "1"])
        == 0
    )
    assert "train: 18 images" in capsys.readouterr().out
    assert main(["data", "prepare", "imagefolder", "--source", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_labels_survive_ffcv_buffer_reuse(cifar10_data):
    # FFCV recycles its batch buffers a few batches later; what a loader yields must stay valid when kept.
    loader = eval_loader(cifar10_data, "test", LoaderConfig(batch_size=256, image_size=32, workers=2))
    kept = [labels for _, labels in loader]
    assert torch.bincount(torch.cat(kept)).tolist() == [1000] * 10
    np.testing.assert_array_equal(torch.cat(kept).numpy(), cifar10_data.labels("test"))


class _Batches(list):
    """Stands in for FFCV's loader: fixed uint8 batches, an epoch attribute the SSL loader sets."""

    next_epoch = 0


def test_processes_augment_their_part_of_one_global_batch_with_distinct_draws():
    from nasiam_bench.data.augment import TwoViewAugment
    from nasiam_bench.data.loaders import SSLLoader

    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    steps = [image.expand(8, -1, -1, -1).clone() for _ in range(2)]  # two steps of a global batch of 8 copies
    labels = torch.zeros(8, dtype=torch.long)

    def loader(rank, world):
        part = slice(rank * 8 // world, (rank + 1) * 8 // world)
        batches = _Batches((images[part], labels[part]) for images in steps)
        augment = TwoViewAugment(32, (0.5,) * 3, (0.25,) * 3, blur=True)
        return SSLLoader(batches, augment, seed=3, device=torch.device("cpu"), length=2, rank=rank, world_size=world)

    one = [(v1, v2) for v1, v2, _ in loader(0, 1)]
    pair = [list(loader(rank, 2)) for rank in (0, 1)]
    for step, (v1, v2) in enumerate(one):
        # Two processes make exactly the views one process makes of the same global batch ...
        torch.testing.assert_close(torch.cat([pair[0][step][0], pair[1][step][0]]), v1, rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([pair[0][step][1], pair[1][step][1]]), v2, rtol=0, atol=0)
        # ... and every sample of it, the same image eight times, gets draws of its own.
        views = torch.cat([v1, v2]).flatten(1)
        assert len(torch.unique(views, dim=0)) == 16
    assert not torch.equal(one[0][0], one[1][0])  # and each step new ones


def _uniform_tree(root, per_split, size=16):
    return make_tree(root, per_split=per_split, sizes=((size, size),))


def test_source_without_a_test_split_gets_a_stratified_holdout(tmp_path):
    from nasiam_bench.eval.evaluate import EvalData

    tree = _uniform_tree(tmp_path / "src", {"train": 10})  # 3 classes x 10 images, no test split
    data = prepare("imagefolder", tree, root=tmp_path / "data", workers=1)
    assert data.eval_split == "holdout" and data.meta["holdout"] == {
        "fraction": 0.1,
        "seed": 0,
        "from": "train",
        "count": 3,
    }
    assert data.split("train").count == 27 and data.split("holdout").count == 3
    assert sorted(data.labels("holdout")) == [0, 1, 2]  # class-stratified
    train_images, train_labels = read_beton(data.split("train").beton)
    held_images, held_labels = read_beton(data.split("holdout").beton)
    np.testing.assert_array_equal(train_labels, data.labels("train"))
    train_set = {x.tobytes() for x in train_images}
    assert len(train_set) == 27 and not any(x.tobytes() in train_set for x in held_images)
    # The torch reference loader reads the same held-out images from the source tree.
    config = LoaderConfig(batch_size=8, image_size=16, workers=0, kind="torch")
    ffcv_config = LoaderConfig(batch_size=8, image_size=16, workers=1)
    for kind_config in (config, ffcv_config):
        _, labels = zip(*eval_loader(data, "holdout", kind_config), strict=True)
        assert torch.cat(labels).tolist() == held_labels.tolist()
    # Evaluation queries the holdout against a bank of the training images only.
    eval_data = EvalData(data, None, ffcv_config)
    assert len(eval_data.queries) == 1 and eval_data.bank is not eval_data.queries
    # --holdout sets the fraction (and a change of it prepares again).
    again = prepare("imagefolder", tree, root=tmp_path / "data", workers=1, holdout=0.2)
    assert again.split("holdout").count == 6 and again.split("train").count == 24


def test_evaluation_refuses_a_bank_that_holds_its_queries(tmp_path):
    from nasiam_bench.data.prepare import PreparedDataset
    from nasiam_bench.eval.evaluate import EvalData

    data = prepare("imagefolder", _uniform_tree(tmp_path / "src", {"train": 4}), root=tmp_path / "data", workers=1)
    stale = PreparedDataset(data.info, data.folder, {**data.meta, "eval_split": "train"})  # as an old prepare wrote
    with pytest.raises(DataError, match=r"its evaluation split is its training split, .* prepare it again"):
        EvalData(stale, None, LoaderConfig(batch_size=8, image_size=16, workers=1))
    with pytest.raises(DataError, match=r"--holdout 0: evaluation would query the kNN bank with its own images"):
        prepare("imagefolder", tmp_path / "src", root=tmp_path / "other", workers=1, holdout=0)


def test_imagefolder_reads_what_torchvision_reads(tmp_path):
    from PIL import Image
    from torchvision.datasets import ImageFolder

    from nasiam_bench.data.datasets import FolderSource

    root = tmp_path / "src"
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    # Nested below the class folder (Tiny-ImageNet's train/<wnid>/images/), odd modes and torchvision's extensions.
    for cls, depth in (("ant", "images"), ("bee", "a/b")):
        folder = root / "train" / cls / depth
        folder.mkdir(parents=True)
        Image.fromarray(pixels).save(folder / "rgb.png")
        Image.fromarray(pixels).convert("L").save(folder / "gray.pgm")
        Image.fromarray(pixels).convert("CMYK").save(folder / "cmyk.jpg")
        Image.fromarray(pixels).convert("P").save(folder / "palette.png")
        Image.fromarray(pixels).convert("RGBA").save(folder / "alpha.webp")
        (folder / "notes.txt").write_text("not an image")
    (root / "val" / "ant").mkdir(parents=True)
    Image.fromarray(pixels).save(root / "val" / "ant" / "0.bmp")
    (root / "annotations").mkdir()  # no images: not a split
    (root / "annotations" / "boxes.txt").write_text("")
    source = FolderSource(root)
    assert source.splits() == ["train", "val"] and source.classes == ["ant", "bee"]
    for split in ("train", "val"):
        reference = ImageFolder(str(root / split), allow_empty=True)
        ours = [(str(path), label) for path, label in source.samples(split)]
        assert ours == [(path, reference.class_to_idx[reference.classes[y]]) for path, y in reference.samples]
    assert len(source.samples("train")) == 10
    Image.fromarray(pixels).save(root / "train" / "ant" / "added.png")
    assert len(source.samples("train")) == 11  # the listing is kept only while the class folders are unchanged
    (root / "train" / "ant" / "added.png").unlink()
    for path, _ in source.samples("train"):
        image = source.read(path)
        assert image.shape == (12, 12, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, np.asarray(Image.open(path).convert("RGB")))
    data = prepare("imagefolder", root, root=tmp_path / "data", workers=1)
    assert data.split("train").count == 10 and data.eval_split == "val"


def test_split_folders_without_classes_fail_clearly(tmp_path):
    from PIL import Image

    root = _uniform_tree(tmp_path / "src", {"train": 2})
    loose = root / "test"
    loose.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(loose / "0.png")
    with pytest.raises(DataError, match=r"src/test: holds images but no class subfolders; expected <root>/<split>/"):
        prepare("imagefolder", root, root=tmp_path / "data", workers=1)
    loose.rename(tmp_path / "moved")
    (root / "test").mkdir()
    (tmp_path / "moved").rename(root / "test" / "images")  # Tiny-ImageNet's val/images/: not a class
    with pytest.raises(DataError, match=r"src/test: classes images are not in train/"):
        prepare("imagefolder", root, root=tmp_path / "data", workers=1)
