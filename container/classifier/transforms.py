"""Image preprocessing, defined once and shared by training and serving.

The serving code builds its transform from the model's saved config through
:func:`eval_transform`, the same function training uses for the valid and test
channels, so the two cannot drift apart.
"""

from __future__ import annotations

from PIL import Image, ImageOps
from torchvision import transforms

# Train-channel augmentation recipes (the `augmentation` hyperparameter); see train_transform.
from classifier.hyperparameter_schema import AUGMENTATIONS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's reference recipe: resize to size / 0.875, then centre-crop to size.
CROP_RATIO = 0.875


def resize_size_for(image_size: int) -> int:
    return int(round(image_size / CROP_RATIO))


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB from whatever Pillow opened: EXIF rotation, 16-bit, CMYK, alpha, palette."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of letting convert() clip at 255.
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        background.alpha_composite(image.convert("RGBA"))
        return background.convert("RGB")
    return image.convert("RGB")


def eval_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> transforms.Compose:
    """Deterministic transform for validation, test and serving."""
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
