import json
import os
import tarfile
import warnings

import numpy as np
import pytest
import torch

from nasiam_bench.cli import main
from nasiam_bench.data.datasets import DataError
from nasiam_bench.data.loaders import LoaderConfig, eval_loader, ssl_loader
from nasiam_bench.data.prepare import CorruptImageWarning, open_prepared, prepare
from nasiam_bench.data.splits import search_halves, stratified_subset
from nasiam_bench.registry import UnknownEntryError
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
