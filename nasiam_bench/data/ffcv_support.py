"""Whether FFCV can be used here, and the loader a spec's ``data.loader`` resolves to.

FFCV is a source package that needs OpenCV and libjpeg-turbo; where it cannot be imported the suite still prepares
datasets (labels and the source tree, no .beton) and reads them with the torch loader, and says so once.
"""

from __future__ import annotations

import functools
import sys


@functools.cache
def ffcv_missing() -> str | None:
    """Why FFCV cannot be used in this environment, or None when it can."""
    try:
        import ffcv.loader
        import ffcv.writer  # noqa: F401
    except Exception as exc:  # ImportError, or a missing shared library (OSError)
        return f"FFCV cannot be imported ({type(exc).__name__}: {exc})"
    return None


def loader_kind(kind: str) -> str:
    """``kind``, except that ``ffcv`` falls back to ``torch`` where FFCV is missing (announced once)."""
    if kind == "ffcv" and ffcv_missing():
        _announce_fallback()
        return "torch"
    return kind


@functools.cache
def _announce_fallback() -> None:
    print(
        f'nasiam-bench: {ffcv_missing()}; reading data with the torch loader instead (data.loader = "torch": '
        "torchvision transforms in DataLoader workers, slower). Install FFCV (`pip install ffcv`, after "
        "OpenCV and libjpeg-turbo, e.g. apt-get install pkg-config libopencv-dev libturbojpeg0-dev) to use it.",
        file=sys.stderr,
    )
