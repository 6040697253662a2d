"""Bytes in, top-k classes out: decode → to_rgb → pixels (classifier.preprocessing) → engine → top-k.

Decoding and preparing run in the request's own thread (Pillow releases the GIL), so they
overlap with the forward pass of other requests, which the worker's
:class:`~classifier.serving.batching.MicroBatcher` runs. Nothing here imports torch: an
engine other than PyTorch serves without it.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from classifier.artifacts import ModelSpec, load_model_spec, resolve_model_dir
from classifier.constants import PrecisionName
from classifier.inference import selection
from classifier.inference.backends import InferenceBackend, softmax
from classifier.inference.engines import load_engine
from classifier.preprocessing import to_pixels, to_rgb
from classifier.serving.batching import BatchTimeout, MicroBatcher, ThreadBudget
from classifier.serving.config import DEFAULT_MAX_CONCURRENT_DECODES, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_TOP_K

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

# What Pillow's decoders raise on malformed data (fuzzing shows all of these); every one
# of them means the caller's bytes are bad, not that the server is.
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class InvalidInput(ValueError):
    """The caller sent something that cannot be classified (HTTP 400)."""


class ModelTimeout(RuntimeError):
    """The model did not answer within the server timeout (HTTP 503)."""


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, min_side: int | None = None
) -> Image.Image:
    """An upright RGB image from encoded bytes, refusing decompression bombs before decoding.

    With ``min_side``, a JPEG much larger than needed is decoded at 1/2, 1/4 or 1/8 scale
    (libjpeg's DCT scaling, Pillow's ``draft``) with both sides still at least ``min_side``:
    the model resizes to that anyway, and a 40 MP photo then takes 2 MB instead of 120 MB.
    """
    if not data:
        raise InvalidInput("the request body is empty; expected an encoded image")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise InvalidInput(
                f"image is {width}x{height} = {width * height} pixels, over the limit of "
                f"{max_pixels} (decompression bomb protection)"
            )
        if min_side is not None and image.format == "JPEG":
            image.draft("RGB", (min_side, min_side))
        image.load()
        return to_rgb(image)
    except UnidentifiedImageError as error:
        raise InvalidInput("the body is not an image format Pillow can read") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidInput(f"decompression bomb refused: {error}") from error
    except DECODE_ERRORS as error:
        raise InvalidInput(f"the image could not be decoded: {error}") from error


class Predictor:
    """A loaded model and its micro-batcher; thread-safe, one per worker process."""

    def __init__(
        self,
        model: InferenceBackend | nn.Module,
        spec: ModelSpec,
        device: str = "cpu",
        *,
        max_batch_size: int = 8,
        max_delay_s: float = 0.0,
        budget: ThreadBudget | None = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        max_concurrent_decodes: int = DEFAULT_MAX_CONCURRENT_DECODES,
        default_top_k: int = DEFAULT_TOP_K,
        timeout_s: float = 60.0,
        fuse: bool = True,
    ):
        """``model`` is an engine from classifier.inference, or a trained torch module (served by
        PyTorch, which only then is imported)."""
        if isinstance(model, InferenceBackend):
            self.backend = model
        else:
            from classifier.inference.torch_backend import TorchBackend

            self.backend = TorchBackend.for_serving(
                model, spec.image_size, device, fuse, mean=spec.mean, std=spec.std
            )
        self.spec = spec
        self.device = device
        self.resize_size = spec.eval_resize
        self.max_image_pixels = max_image_pixels
        self._decodes = threading.BoundedSemaphore(max_concurrent_decodes)
        self.default_top_k = min(default_top_k, spec.num_classes)
        self.timeout_s = timeout_s
        self.max_batch_size = max_batch_size
        self.batcher = MicroBatcher(
            self._forward, max_batch_size, max_delay_s, budget, name="micro-batcher",
            set_threads=self.backend.set_threads,
        )  # fmt: skip
        self._warm = False
        self.load_seconds: float | None = None

    @property
    def model(self):
        """The PyTorch module being served, if PyTorch serves it."""
        return getattr(self.backend, "model", None)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def precision(self) -> PrecisionName:
        return self.backend.precision

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "cpu",
        *,
        backend: str = selection.AUTO,
        precision: str = PrecisionName.AUTO,
        threads: int = 1,
        **options,
    ) -> Predictor:
        """Load the model directory training wrote (or its model.tar.gz) on the engine that
        :func:`classifier.inference.selection.choose` picks; start and warm up."""
        started = time.perf_counter()
        model_dir = resolve_model_dir(model_dir)
        spec = load_model_spec(model_dir)
        choice = selection.choose(model_dir, spec, device, backend, PrecisionName(precision))
        engine = load_engine(model_dir, spec, device, choice, threads)
        predictor = cls(engine, spec, device, **options).start()
        loaded = time.perf_counter()
        try:
            predictor.warm_up()
        except BaseException:
            # A failed load leaves nothing behind: no batcher thread holding the engine.
            predictor.close()
            raise
        predictor.load_seconds = time.perf_counter() - started
        logger.info(
            "loaded %s with %d classes on %s in %.2f s (warm-up %.2f s); inference backend %s (%s)",
            spec.architecture,
            spec.num_classes,
            device,
            loaded - started,
            time.perf_counter() - loaded,
            predictor.backend.describe(),
            choice.reason,
        )
        return predictor

    def start(self) -> Predictor:
        self.batcher.start()
        return self

    def close(self) -> None:
        self.batcher.stop(timeout=self.timeout_s)

    @property
    def ready(self) -> bool:
        """True once a warm-up prediction ran and the batcher still runs."""
        return self._warm and self.batcher.alive

    def warm_up(self) -> None:
        """Run the whole path once (and a full batch), so the first caller pays no setup."""
        buffer = io.BytesIO()
        Image.new("RGB", (self.resize_size, self.resize_size), (127, 127, 127)).save(buffer, "PNG")
        pixels = self.prepare(buffer.getvalue())
        self.predict([pixels], 1)
        if self.max_batch_size > 1:
            self._forward([pixels] * self.max_batch_size)
        self._warm = True

    def prepare(self, data: bytes) -> np.ndarray:
        """Decode one encoded image into the pixels an engine takes, in the caller's thread; at
        most ``max_concurrent_decodes`` at once, so concurrent large images cannot add up."""
        with self._decodes:
            image = decode_image(data, self.max_image_pixels, self.resize_size)
            self._check_resized_size(image.size)
            return to_pixels(image, self.spec.image_size, self.resize_size, self.spec.interpolation)

    def _check_resized_size(self, size: tuple[int, int]) -> None:
        """A 1x60000 strip would be resized to gigapixels before the centre crop; refuse it."""
        short, long = min(size), max(size)
        resized_pixels = self.resize_size * (self.resize_size * long / short)
        if resized_pixels > self.max_image_pixels:
            raise InvalidInput(
                f"image of {size[0]}x{size[1]} has too extreme an aspect ratio: resizing its "
                f"short side to {self.resize_size} would make {int(resized_pixels)} pixels"
            )

    def predict(self, images: list[np.ndarray], top_k: int) -> list[list[dict]]:
        """Top-k predictions per prepared image, in order; k is capped at the class count."""
        try:
            rows = self.batcher.run(images, timeout=self.timeout_s)
        except BatchTimeout as error:
            raise ModelTimeout(f"no prediction within {self.timeout_s:g} s") from error
        k = min(top_k, self.spec.num_classes)
        return [self._top_k(row, k) for row in rows]

    def _top_k(self, probabilities: np.ndarray, k: int) -> list[dict]:
        indices = np.argsort(-probabilities, kind="stable")[:k].tolist()
        values = probabilities[indices].tolist()
        names = self.spec.class_names
        return [
            {"label": names[index], "index": index, "probability": value}
            for value, index in zip(values, indices, strict=True)
        ]

    def _forward(self, images: list[np.ndarray]) -> np.ndarray:
        """Softmax probabilities, one row per image."""
        batch = images[0][None] if len(images) == 1 else np.stack(images)  # a lone image: a view, no copy
        return softmax(self.backend.logits(batch))
