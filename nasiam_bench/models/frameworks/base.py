"""What every SSL framework provides to the trainer, which knows none of them by name."""

from __future__ import annotations

import inspect
from typing import ClassVar

import torch
from torch import nn

from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.models.heads.supernet import Cell, follow_architecture


class Framework(nn.Module):
    """A backbone with the framework's heads; ``forward(view1, view2)`` returns the loss.

    Subclasses define ``baseline_heads`` (their papers' MLPs), ``_cells`` (the searched heads' layouts), the loss in
    ``forward``, and any per-step work in ``after_step`` (momentum encoders). ``options`` are the framework's
    hyperparameters, with the paper's values as defaults; the spec's ``[framework]`` section overrides those a
    framework lists in ``OPTIONS``.
    """

    OPTIONS: ClassVar[dict[str, float | int]] = {}
    # Options of every framework: ``head_width`` scales the sizes the paper fixes (hidden and output widths, not the
    # backbone's feature size), for heads in proportion to a narrowed backbone; ``dim`` applies it.
    COMMON_OPTIONS: ClassVar[dict[str, float | int]] = {"head_width": 1.0}
    HEADS: ClassVar[tuple[str, ...]] = ("projector",)
    SEARCH_LAYERS: ClassVar[dict[str, int]] = {"projector": 4}  # the paper's searched layers per head
    ONLINE_VIEWS: ClassVar[int] = 2  # views whose backbone features the loss needs with gradients
    FIXED_LR_HEADS: ClassVar[tuple[str, ...]] = ()  # heads whose learning rate no schedule changes

    def __init__(
        self,
        backbone: nn.Module,
        heads: dict[str, nn.Module] | None = None,
        options: dict[str, float | int] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(backbone.num_features)
        self.options = self.resolve_options(options or {})
        heads = heads if heads is not None else self.baseline_heads(self.feature_dim, self.options)
        if set(heads) != set(self.HEADS):
            raise NasiamBenchError(
                f"{type(self).__name__} takes heads {', '.join(self.HEADS)}; got {', '.join(sorted(heads)) or 'none'}"
            )
        self.heads = nn.ModuleDict(heads)

    @classmethod
    def resolve_options(cls, given: dict[str, float | int]) -> dict[str, float | int]:
        unknown = sorted(set(given) - set(cls.option_names()))
        if unknown:
            names = ", ".join(cls.option_names())
            raise NasiamBenchError(f"framework option {unknown[0]!r} does not apply to {cls.__name__}; valid: {names}")
        return {**cls.COMMON_OPTIONS, **cls.OPTIONS, **given}

    @classmethod
    def option_names(cls) -> list[str]:
        """The options a spec's ``[framework]`` may set for this framework: its own, then every framework's."""
        return [*cls.OPTIONS, *cls.COMMON_OPTIONS]

    @staticmethod
    def dim(size: int, options: dict) -> int:
        """A head size the paper fixes, scaled by the resolved ``head_width`` (at least 1)."""
        return max(1, round(size * float(options["head_width"])))

    @classmethod
    def baseline_heads(cls, feature_dim: int, options: dict) -> dict[str, nn.Module]:
        """The framework's standard heads for ``feature_dim`` backbone features (``options``: resolved)."""
        raise NotImplementedError

    @classmethod
    def search_cells(
        cls, feature_dim: int, layers: dict[str, int] | None = None, options: dict[str, float | int] | None = None
    ) -> dict[str, Cell]:
        """The searched heads' layouts; ``layers`` overrides the paper's layer count of a head (0 keeps it);
        ``options``: the framework options given (``head_width`` sizes the cells)."""
        counts = {**cls.SEARCH_LAYERS, **{k: v for k, v in (layers or {}).items() if v}}
        if "options" not in inspect.signature(cls._cells).parameters:  # a plugin's _cells(feature_dim, counts)
            return cls._cells(feature_dim, counts)
        return cls._cells(feature_dim, counts, options=cls.resolve_options(options or {}))

    @classmethod
    def _cells(cls, feature_dim: int, counts: dict[str, int], options: dict) -> dict[str, Cell]:
        """The searched heads' layouts for ``counts`` layers a head (``options``: resolved)."""
        raise NotImplementedError

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor, features: tuple[torch.Tensor, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss": scalar, "embedding": the online projector's output for view1, detached}``.

        ``features``: the backbone's outputs for the first ``online_views`` views, computed already (the search's
        architecture step computes them without autograd).
        """
        raise NotImplementedError

    def project_pair(
        self, view1: torch.Tensor, view2: torch.Tensor, features: tuple[torch.Tensor, ...] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The projector's outputs for both views (from ``features`` when the backbone has run already)."""
        f1, f2 = self.online_features((view1, view2), features)
        return self.heads["projector"](f1), self.heads["projector"](f2)

    def online_features(
        self, views: tuple[torch.Tensor, ...], features: tuple[torch.Tensor, ...] | None
    ) -> tuple[torch.Tensor, ...]:
        return features if features is not None else tuple(self.backbone(v) for v in views[: self.online_views])

    @property
    def online_views(self) -> int:
        """How many views the loss needs through the online backbone, with gradients."""
        return self.ONLINE_VIEWS

    def after_step(self, progress: float) -> None:
        """Called after each optimiser step with the fraction of training done (momentum updates)."""

    def param_groups(self) -> list[dict]:
        """Parameter groups for the optimiser; a group with ``fixed_lr`` keeps its learning rate unscheduled.

        Built in the order of ``named_parameters``, the same in every process, so that an optimiser state saved by
        one process loads, tensor by tensor, into another.
        """
        fixed = tuple(f"heads.{head}." for head in self.FIXED_LR_HEADS)
        trained = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        groups = [{"params": [p for name, p in trained if not name.startswith(fixed)]}]
        if fixed:
            groups.append({"params": [p for name, p in trained if name.startswith(fixed)], "fixed_lr": True})
        return groups

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads["projector"](self.backbone(x))


class MomentumEncoder(nn.Module):
    """A frozen copy of backbone + projector, following the online one by an exponential moving average."""

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        import copy

        self.backbone, self.projector = copy.deepcopy(backbone), copy.deepcopy(projector)
        follow_architecture(self.projector, projector)  # a searched projector: the online one's ops, every step
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, backbone: nn.Module, projector: nn.Module, momentum: float) -> None:
        online = [*backbone.parameters(), *projector.parameters()]
        target = [*self.backbone.parameters(), *self.projector.parameters()]
        torch._foreach_mul_(target, momentum)
        torch._foreach_add_(target, online, alpha=1 - momentum)
        # Buffers (BatchNorm statistics) stay the target's own, from its forward passes, as in MoCo's and BYOL's code.

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))
