"""The deterministic image preprocessing, in Pillow and numpy only: shared by training and serving.

An image becomes *pixels*: the upright RGB image resized (short side to ``resize_size``,
bilinear with Pillow's antialiasing) and centre-cropped to ``image_size``, as a
``(image_size, image_size, 3)`` uint8 array. That is exactly what torchvision's
``Resize(resize_size)`` and ``CenterCrop(image_size)`` produce from a PIL image;
:func:`normalize` then gives what ``ToTensor()`` and ``Normalize(mean, std)`` give, as float32
NCHW. ``classifier.transforms.eval_transform`` (training's valid and test channels) is the
same recipe in torchvision, and a unit test holds the two equal.

The server never imports torch: an engine takes a batch of pixels and normalizes it itself
(OpenVINO inside the compiled graph, PyTorch on its device), so a request holds a quarter of
the bytes a float tensor would take.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's reference recipe: resize to size / 0.875, then centre-crop to size.
CROP_RATIO = 0.875
# The resampling filters a model config may name, as Pillow (and torchvision, for PIL images) apply them.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


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


def resized_size(size: tuple[int, int], resize_size: int) -> tuple[int, int]:
    """(width, height) after the short side goes to ``resize_size``; the long side is truncated,
    as torchvision's ``Resize(int)`` does."""
    width, height = size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(resize_size * long / short)
    return (resize_size, new_long) if width <= height else (new_long, resize_size)


def to_pixels(
    image: Image.Image, image_size: int, resize_size: int | None = None, interpolation: str = "bilinear"
) -> np.ndarray:
    """The ``(image_size, image_size, 3)`` uint8 crop of an RGB image (see the module docstring).

    The whole image is resized, then cropped: resampling only the cropped region (Pillow's
    ``resize(box=...)``) is 1.5x faster but rounds a quarter of the values of some portrait
    photos one grey level away from what training saw. A crop larger than the resized image
    is padded with black, centred, as torchvision pads.
    """
    resize_size = resize_size_for(image_size) if resize_size is None else resize_size
    width, height = resized_size(image.size, resize_size)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling[interpolation.upper()])
    if width < image_size or height < image_size:
        padded = Image.new("RGB", (max(width, image_size), max(height, image_size)))
        padded.paste(image, (max(0, (image_size - width) // 2), max(0, (image_size - height) // 2)))
        image, (width, height) = padded, padded.size
    top = int(round((height - image_size) / 2.0))
    left = int(round((width - image_size) / 2.0))
    return np.asarray(image.crop((left, top, left + image_size, top + image_size)), dtype=np.uint8)


def normalize(
    pixels: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """float32 NCHW from uint8 NHWC (or one HWC image): ``(pixels / 255 - mean) / std``."""
    batch = pixels[None] if pixels.ndim == 3 else pixels
    scaled = batch.astype(np.float32) / np.float32(255)
    scaled -= np.asarray(mean, dtype=np.float32)
    scaled /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))
