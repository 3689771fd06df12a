"""``train.compile``: torch.compile of the backbone and of every head, in place.

``nn.Module.compile`` wraps each module's forward and leaves its parameters and state-dict keys as they are, so a
compiled run writes the checkpoints an uncompiled one writes and can resume from them. Modules are compiled one by
one (not the framework's forward, whose loss and queue updates differ between frameworks) so that each graph is a
plain feed-forward network.
"""

from __future__ import annotations

from torch import nn


def compile_model(model: nn.Module, mode: str | None = None) -> nn.Module:
    """Compile ``model``'s submodules in place (the heads one by one); returns ``model``."""
    for child in model.children():
        if isinstance(child, nn.ModuleDict):
            for head in child.values():
                head.compile(mode=mode)
        elif any(True for _ in child.parameters()):
            child.compile(mode=mode)
    return model
