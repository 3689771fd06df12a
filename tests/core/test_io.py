"""Atomic writes give a file the mode ``open`` would (issue 23): a group that shares a machine can read the data,
checkpoints and results of its members when their umask lets it."""

import os
import stat

import pytest

from nasiam_bench.core import io

WRITERS = {
    "text": lambda path: io.atomic_write_text(path, "a"),
    "json": lambda path: io.atomic_write_json(path, {"a": 1}),
    "torch": lambda path: io.save_torch(path, {"a": 1}),
}


@pytest.fixture
def umask(request):
    old = os.umask(request.param)
    io._umask.cache_clear()
    yield request.param
    os.umask(old)
    io._umask.cache_clear()


@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077], indirect=True)
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_an_atomic_write_respects_the_umask(writer, umask, tmp_path):
    path = tmp_path / "out"
    WRITERS[writer](path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert not list(tmp_path.glob(".out.*"))  # no temporary left behind
