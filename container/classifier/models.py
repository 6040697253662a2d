"""torchvision classification models with the head sized for the data set."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision import models

logger = logging.getLogger(__name__)

STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for and cannot be had."""


def classification_models() -> list[str]:
    """Every name torchvision's registry lists as an image classifier."""
    return sorted(models.list_models(module=models))


def create_model(architecture: str, num_classes: int) -> nn.Module:
    """A randomly initialised network whose classifier head has ``num_classes`` outputs."""
    if architecture not in classification_models():
        raise ValueError(f"unknown model {architecture!r}")
    with warnings.catch_warnings():
        # inception_v3/googlenet warn about their default init scheme on every build.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        return models.get_model(architecture, weights=None, num_classes=num_classes)


def logits_of(output) -> torch.Tensor:
    """inception_v3 and googlenet return named tuples in train mode; take the main logits."""
    return output.logits if hasattr(output, "logits") else output


def _find_state_dict_file(channel_dir: Path) -> Path:
    candidates = sorted(p for p in channel_dir.rglob("*") if p.suffix in STATE_DICT_SUFFIXES)
    if len(candidates) != 1:
        raise PretrainedWeightsError(
            f"the 'pretrained' channel {channel_dir} must hold exactly one state_dict file "
            f"({', '.join(STATE_DICT_SUFFIXES)}); found {[str(c) for c in candidates] or 'none'}"
        )
    return candidates[0]


def _torchvision_state_dict(architecture: str) -> dict:
    weights = models.get_model_weights(architecture).DEFAULT
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:  # urllib/OSError variants depend on the network failure
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise PretrainedWeightsError(
            f"pretrained=true but the {architecture} weights ({weights}) are not in the torch "
            f"cache {cache} and could not be downloaded ({type(error).__name__}: {error}). "
            "Put a state_dict in the 'pretrained' channel, bake the weights into the image "
            "(build arg PRETRAINED_MODELS), or set pretrained=false."
        ) from error


def load_pretrained(model: nn.Module, architecture: str, channel_dir: Path | None) -> set[str]:
    """Load backbone weights into ``model``; returns the names of the freshly initialised head.

    Every tensor whose shape matches is loaded; the ones that differ are the classifier
    head (sized for another number of classes). Anything else missing is an error.
    """
    if channel_dir is not None:
        source = _find_state_dict_file(channel_dir)
        state = torch.load(source, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        label = str(source)
    else:
        state = _torchvision_state_dict(architecture)
        label = f"torchvision {architecture} weights"
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{label} is not a state_dict")
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    head = {k for k in own if k not in compatible}
    unexpected = set(own) - set(compatible)
    if not compatible or len(head) > max(4, len(own) // 10):
        raise PretrainedWeightsError(
            f"{label} does not fit {architecture}: {len(unexpected)} of {len(own)} tensors "
            f"missing or of another shape (e.g. {sorted(unexpected)[:3]})"
        )
    model.load_state_dict(compatible, strict=False)
    logger.info("loaded %d tensors from %s; new head: %s", len(compatible), label, sorted(head))
    return head


def freeze_all_but(model: nn.Module, trainable: set[str]) -> int:
    """Freeze every parameter not named in ``trainable``; returns how many stay trainable."""
    count = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name in trainable
        count += parameter.numel() if parameter.requires_grad else 0
    return count
