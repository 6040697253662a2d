"""What a watcher shows at the job's end: the confusion matrix and the worst mispredicted images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.debugging.report import confusion_figure, new_figure
from classifier.preprocessing import to_rgb

WORST_SHOWN = 16
THUMBNAIL = 128

__all__ = ["Misprediction", "confusion_figure", "worst_mispredictions", "worst_mispredictions_figure"]


@dataclass(frozen=True)
class Misprediction:
    path: Path
    true_label: str
    predicted_label: str
    probability: float


def worst_mispredictions(
    paths: list[Path],
    targets: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    count: int = WORST_SHOWN,
) -> list[Misprediction]:
    """Up to ``count`` images, worst first: the wrong predictions made with the highest
    probability, then (when fewer are wrong) the right ones made with the lowest."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != targets)
    right = np.flatnonzero(predicted == targets)
    worst_wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    least_sure_right = right[np.argsort(confidence[right], kind="stable")]
    order = np.concatenate([worst_wrong, least_sure_right])[:count]
    return [
        Misprediction(paths[i], class_names[targets[i]], class_names[predicted[i]], float(confidence[i]))
        for i in order
    ]


def worst_mispredictions_figure(mispredictions: list[Misprediction]):
    """A grid of the images, each titled with its true and predicted class; None if there are none."""
    if not mispredictions:
        return None
    columns = min(4, len(mispredictions))
    rows = math.ceil(len(mispredictions) / columns)
    figure = new_figure((3.0 * columns, 3.3 * rows))
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for ax, item in zip(axes, mispredictions, strict=False):
        with Image.open(item.path) as image:
            thumbnail = to_rgb(image)
            thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
        ax.imshow(np.asarray(thumbnail))
        title = f"true {item.true_label}\npredicted {item.predicted_label} ({item.probability:.2f})"
        ax.set_title(title, fontsize=8)
    for ax in axes:
        ax.axis("off")
    wrong = sum(item.true_label != item.predicted_label for item in mispredictions)
    figure.suptitle(f"Worst predicted validation images ({wrong} of them mispredicted)")
    return figure
