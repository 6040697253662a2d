"""The server's torch-free preprocessing gives exactly what training's torchvision eval transform gives."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from classifier.preprocessing import normalize, resize_size_for, to_pixels, to_rgb
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


def test_the_model_config_keeps_its_preprocessing_and_an_older_one_loads_as_before(tmp_path):
    import json

    import pytest

    from classifier.artifacts import FORMAT_VERSION, ModelArtifactError, ModelSpec

    saved = ModelSpec("resnet18", ("a", "b"), 224, resize_size=300, interpolation="bicubic")
    loaded = ModelSpec.from_json(saved.to_json())
    assert (loaded.eval_resize, loaded.interpolation, loaded.format_version) == (
        300,
        "bicubic",
        FORMAT_VERSION,
    )
    # A format-1 config (no preprocessing saved): served as it always was, 224 / 0.875, bilinear.
    older = json.dumps(
        {"architecture": "resnet18", "class_names": ["a", "b"], "image_size": 224, "format_version": 1}
    )
    assert (ModelSpec.from_json(older).eval_resize, ModelSpec.from_json(older).interpolation) == (
        256,
        "bilinear",
    )
    with pytest.raises(ModelArtifactError, match="interpolation 'lanczos9'"):
        ModelSpec.from_json(json.dumps({**json.loads(older), "interpolation": "lanczos9"}))


def test_the_saved_resize_and_interpolation_are_what_the_server_applies():
    import io

    from classifier.artifacts import ModelSpec
    from classifier.inference.backends import InferenceBackend
    from classifier.serving.predictor import Predictor

    class Unused(InferenceBackend):
        name = "unused"

        def logits(self, pixels):
            raise AssertionError("not called")

        def set_threads(self, threads):
            pass

    image = Image.fromarray(np.random.default_rng(7).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    spec = ModelSpec("resnet18", ("a", "b"), 64, resize_size=90, interpolation="bicubic")
    predictor = Predictor(Unused(), spec)
    np.testing.assert_array_equal(predictor.prepare(buffer.getvalue()), to_pixels(image, 64, 90, "bicubic"))
    expected = eval_transform(64)(image).numpy()
    np.testing.assert_array_equal(
        normalize(to_pixels(image, 64, resize_size_for(64), "bilinear"))[0], expected
    )
    bicubic = to_pixels(image, 64, 90, "bicubic")
    assert bicubic.shape == (64, 64, 3) and not np.array_equal(bicubic, to_pixels(image, 64, 90, "bilinear"))


def test_the_exif_orientation_is_applied_for_training_and_serving_alike(tmp_path):
    """A photo stored sideways with orientation 6 ("rotate 90° clockwise to display") is seen
    upright: its left half, red, becomes the top."""
    stored = Image.new("RGB", (20, 10), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))
    exif = stored.getexif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.png"
    stored.save(path, exif=exif)
    with Image.open(path) as opened:
        upright = to_rgb(opened)
    assert upright.size == (10, 20)
    assert upright.getpixel((5, 2)) == (255, 0, 0) and upright.getpixel((5, 17)) == (0, 0, 255)
