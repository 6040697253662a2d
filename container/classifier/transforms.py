"""torchvision transforms of training: augmentation for the train channel, and the eval
transform of the valid and test channels.

The eval transform is :mod:`classifier.preprocessing`'s recipe (what the server runs,
without torch) written in torchvision; ``tests/unit/test_preprocessing.py`` holds the two
equal pixel for pixel.
"""

from __future__ import annotations

from torchvision import transforms

# Train-channel augmentation recipes (the `augmentation` hyperparameter); see train_transform.
from classifier.hyperparameter_schema import AUGMENTATIONS
from classifier.preprocessing import IMAGENET_MEAN, IMAGENET_STD, resize_size_for, to_rgb

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "resize_size_for", "to_rgb", "train_transform"]


def eval_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> transforms.Compose:
    """Deterministic transform of the valid and test channels."""
    return transforms.Compose(
        [
            transforms.Resize(resize_size_for(image_size)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def train_transform(
    image_size: int, augmentation: str = "standard", mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> transforms.Compose:
    """Random augmentation for the train channel; ``none`` equals the eval transform."""
    if augmentation == "none":
        return eval_transform(image_size, mean, std)
    if augmentation == "light":
        # No flip: safe for digits, text and other orientation-dependent classes.
        geometry = [
            transforms.Resize(resize_size_for(image_size)),
            transforms.RandomCrop(image_size),
        ]
    elif augmentation == "standard":
        # Fine-tuning on small data: crops keep at least 60% of the image. ImageNet's
        # 8-100% crops (the "strong" recipe) underfit a few thousand images in a few epochs.
        geometry = [
            transforms.RandomResizedCrop(image_size, scale=(0.6, 1.0)),
            transforms.RandomHorizontalFlip(),
        ]
    elif augmentation == "strong":
        geometry = [
            transforms.RandomResizedCrop(image_size),
            transforms.RandomHorizontalFlip(),
            transforms.TrivialAugmentWide(),
        ]
    else:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    return transforms.Compose([*geometry, transforms.ToTensor(), transforms.Normalize(mean, std)])
