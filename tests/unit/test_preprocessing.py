"""The server's torch-free preprocessing gives exactly what training's torchvision eval transform gives."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from classifier.preprocessing import normalize, resize_size_for, to_pixels
from classifier.transforms import eval_transform

SIZES = (16, 32, 64, 224, 299)


def _image(rng: np.random.Generator) -> Image.Image:
    """Noise, or a smooth picture, of a random size from 1 px up (portrait, landscape, strips)."""
    width, height = int(rng.integers(1, 700)), int(rng.integers(1, 700))
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if rng.random() < 0.5:
        image = image.resize((max(1, width // 8), max(1, height // 8))).resize((width, height), Image.BICUBIC)
    return image


@pytest.mark.parametrize("seed", range(4))
def test_pixels_normalized_equal_the_torchvision_eval_transform_exactly(seed):
    rng = np.random.default_rng(seed)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    for _ in range(40):
        image, size = _image(rng), int(rng.choice(SIZES))
        expected = eval_transform(size, mean, std)(image).numpy()
        pixels = to_pixels(image, size)
        assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
        np.testing.assert_array_equal(
            normalize(pixels, mean, std)[0], expected, err_msg=f"{image.size} at {size}"
        )


def test_a_crop_larger_than_the_resized_image_is_padded_black_and_centred():
    image = Image.new("RGB", (10, 20), (200, 100, 50))
    pixels = to_pixels(image, 16, resize_size=8)  # resized to 8x16: 4 black columns each side
    assert (pixels[:, :4] == 0).all() and (pixels[:, -4:] == 0).all()
    assert (pixels[:, 4:12] == (200, 100, 50)).all()
    np.testing.assert_array_equal(
        normalize(pixels, (0, 0, 0), (1, 1, 1))[0] * 255,
        np.transpose(pixels, (2, 0, 1)).astype(np.float32),
    )


def test_normalize_takes_one_image_or_a_batch():
    pixels = np.full((4, 4, 3), 255, np.uint8)
    single, batch = normalize(pixels), normalize(np.stack([pixels, pixels]))
    assert single.shape == (1, 3, 4, 4) and batch.shape == (2, 3, 4, 4) and single.dtype == np.float32
    np.testing.assert_allclose(
        single[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225]
    )
    assert resize_size_for(224) == 256
