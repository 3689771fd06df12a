"""MoCo v2's two-view recipe as batched tensor ops, run after FFCV has decoded a batch (on the GPU when there is one).

Per sample and view: RandomResizedCrop (scale 0.2-1, ratio 3/4-4/3), horizontal flip (p 0.5), ColorJitter
0.4/0.4/0.4/0.1 (p 0.8), grayscale (p 0.2), Gaussian blur (p 0.5, sigma 0.1-2.0 at 224 px, for ImageNet-sized data
only), normalisation. FFCV has no jitter, grayscale or blur op, and the whole batch at once is cheaper than an op per
image: the image is decoded once and augmented twice. Random parameters come from a ``torch.Generator``, so a seed
fixes them whatever the device or thread count. They are drawn for the whole global batch and each process takes
the rows of its own samples, so that N processes make exactly the views one process makes of the same batch.
Two differences from torchvision: the four jitter operations run in a fixed order (brightness, contrast,
saturation, hue) rather than a random one, and the crop is resampled with ``roi_align`` (bilinear, averaging
several samples per output pixel when it shrinks).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import roi_align

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


class Normalize(nn.Module):
    """uint8 [B,3,H,W] -> float, scaled to [0, 1] and standardised per channel."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() if images.dtype != torch.uint8 else images.float().div_(255.0)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


class TwoViewAugment(nn.Module):
    """Two independently augmented, normalised views of a uint8 batch."""

    def __init__(
        self,
        size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        blur: bool,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        p_jitter: float = 0.8,
        p_gray: float = 0.2,
        p_blur: float = 0.5,
        sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        super().__init__()
        self.size, self.scale, self.ratio = size, scale, ratio
        self.jitter, self.p_jitter, self.p_gray = jitter, p_jitter, p_gray
        self.p_blur = p_blur if blur else 0.0
        self.sigma = (sigma[0] * size / 224, sigma[1] * size / 224)  # MoCo v2's sigmas are for 224-px images
        self.normalize = Normalize(mean, std)

    def forward(
        self, images: torch.Tensor, generator: torch.Generator, offset: int = 0, total: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views of ``images``, the samples ``offset`` to ``offset + len(images)`` of a global batch of
        ``total`` (default: ``images`` is the whole batch)."""
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        rows = slice(offset, offset + len(x))
        total = len(x) if total is None else total
        return self.view(x, generator, rows, total), self.view(x, generator, rows, total)

    def view(self, x: torch.Tensor, g: torch.Generator, rows: slice, total: int) -> torch.Tensor:
        n = x.shape[0]

        def rand(*shape: int) -> torch.Tensor:  # drawn on the CPU so that a seed means the same on every device
            return torch.rand(total, *shape[1:], generator=g)[rows].to(x.device, non_blocking=True)

        out = random_resized_crop(x, self.size, self.scale, self.ratio, g, rows, total)
        out = torch.where(rand(n).lt(0.5).view(n, 1, 1, 1), out.flip(-1), out)
        out = recolour(out, rand(n).lt(self.p_jitter), rand(n, 4), rand(n).lt(self.p_gray), self.jitter)
        if self.p_blur > 0:
            sigmas = self.sigma[0] + rand(n) * (self.sigma[1] - self.sigma[0])
            out = torch.where(rand(n).lt(self.p_blur).view(n, 1, 1, 1), gaussian_blur(out, sigmas, self.sigma[1]), out)
        return self.normalize(out).contiguous(memory_format=torch.channels_last)


def crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    g: torch.Generator,
    attempts: int = 10,
) -> torch.Tensor:
    """torchvision's RandomResizedCrop parameters for ``n`` images at once: [n, 4] boxes (x0, y0, x1, y1)."""
    area = height * width
    target = area * (scale[0] + torch.rand(n, attempts, generator=g) * (scale[1] - scale[0]))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + torch.rand(n, attempts, generator=g) * (log_hi - log_lo))
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.float().argmax(dim=1)  # the first attempt that fits, as torchvision's loop
    w = w.gather(1, first[:, None]).squeeze(1)
    h = h.gather(1, first[:, None]).squeeze(1)
    # None fits: torchvision's fallback, a centred crop of the whole image with the ratio clamped.
    in_ratio = width / height
    fw, fh = (
        (width, round(width / ratio[0]))
        if in_ratio < ratio[0]
        else ((round(height * ratio[1]), height) if in_ratio > ratio[1] else (width, height))
    )
    fallback = ~ok.any(dim=1)
    w = torch.where(fallback, torch.tensor(float(fw)), w)
    h = torch.where(fallback, torch.tensor(float(fh)), h)
    y0 = torch.floor(torch.rand(n, generator=g) * (height - h + 1))
    x0 = torch.floor(torch.rand(n, generator=g) * (width - w + 1))
    y0 = torch.where(fallback, torch.floor((height - h) / 2), y0)
    x0 = torch.where(fallback, torch.floor((width - w) / 2), x0)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    g: torch.Generator,
    rows: slice | None = None,
    total: int | None = None,
) -> torch.Tensor:
    """Crops of ``x``, the ``rows`` of a global batch of ``total`` images (default: ``x`` is the whole batch)."""
    n, _, height, width = x.shape
    boxes = crop_boxes(total or n, height, width, scale, ratio, g)[rows or slice(None)].to(x.device)
    rois = torch.cat([torch.arange(n, device=x.device, dtype=x.dtype)[:, None], boxes.to(x.dtype)], dim=1)
    return roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _blend(a: torch.Tensor, b: torch.Tensor | float, factor: torch.Tensor) -> torch.Tensor:
    return (factor.view(-1, 1, 1, 1) * a + (1 - factor.view(-1, 1, 1, 1)) * b).clamp_(0.0, 1.0)


def color_jitter(
    x: torch.Tensor, apply: torch.Tensor, u: torch.Tensor, strength: tuple[float, float, float, float]
) -> torch.Tensor:
    """ColorJitter with per-sample factors drawn from ``u`` ([n, 4] uniform); samples where ``apply`` is False
    keep factor 1 (hue 0), which leaves them unchanged."""
    b, c, s, h = strength
    one = torch.ones_like(u[:, 0])
    brightness = torch.where(apply, 1 - b + 2 * b * u[:, 0], one)
    contrast = torch.where(apply, 1 - c + 2 * c * u[:, 1], one)
    saturation = torch.where(apply, 1 - s + 2 * s * u[:, 2], one)
    hue = torch.where(apply, -h + 2 * h * u[:, 3], torch.zeros_like(one))
    x = _blend(x, 0.0, brightness)
    x = _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), contrast)
    x = _blend(x, grayscale(x), saturation)
    return shift_hue(x, hue)


def recolour(
    x: torch.Tensor,
    jitter: torch.Tensor,
    u: torch.Tensor,
    gray: torch.Tensor,
    strength: tuple[float, float, float, float],
) -> torch.Tensor:
    """The recipe's colour steps on [0, 1] images: ColorJitter where ``jitter`` (factors from ``u``), then
    grayscale (three equal channels) where ``gray``."""
    x = color_jitter(x, jitter, u, strength)
    return torch.where(gray.view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each image by its ``shift`` (a fraction of the colour circle), through HSV."""
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = torch.where(delta > 0, hue / 6.0, torch.zeros_like(hue))
    hue = torch.remainder(hue + shift.view(-1, 1, 1), 1.0)
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return hsv_to_rgb(hue, sat, maxc)


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # For each of the six sectors, which of (v, q, p, t) is red, green and blue.
    table = torch.stack(
        [torch.stack(c, dim=0) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], dim=0
    )  # [6, 3, n, H, W]
    index = i.unsqueeze(0).unsqueeze(0).expand(1, 3, *i.shape)
    return table.gather(0, index).squeeze(0).permute(1, 0, 2, 3)


def gaussian_blur(x: torch.Tensor, sigmas: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image, as a grouped convolution over the whole batch."""
    n, c, height, width = x.shape
    radius = max(1, math.ceil(3 * max_sigma))
    radius = min(radius, (min(height, width) - 1) // 2) or 1
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigmas[:, None].to(x.dtype)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [n*c, k]
    flat = x.reshape(1, n * c, height, width)
    flat = nn.functional.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = nn.functional.conv2d(flat, kernel.view(n * c, 1, 1, -1), groups=n * c)
    flat = nn.functional.conv2d(flat, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return flat.view(n, c, height, width)
