"""Bytes in, top-k classes out: decode → to_rgb → the shared eval transform → forward → top-k.

Decoding and the transform run in the request's own thread (Pillow and torch release
the GIL), so they overlap with the forward pass of other requests, which runs in the
worker's :class:`~classifier.serving.batching.MicroBatcher`.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeoutError
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from classifier.artifacts import ModelSpec, load_model, load_model_spec, resolve_model_dir
from classifier.inference import selection
from classifier.inference.backends import InferenceBackend, OnnxRuntimeBackend, OpenVinoBackend, TorchBackend
from classifier.models import logits_of
from classifier.serving.batching import MicroBatcher, ThreadBudget
from classifier.serving.config import DEFAULT_MAX_CONCURRENT_DECODES, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_TOP_K
from classifier.transforms import eval_transform, resize_size_for, to_rgb

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


# How far fused and original probabilities may differ before the fusion is rejected; float
# rounding from folding batch norm into convolutions is ~1e-6.
FUSION_TOLERANCE = 1e-4


def fuse_for_inference(model: nn.Module, image_size: int) -> nn.Module:
    """Fold batch norm into the convolutions before it (~10% faster on CPU), if verified.

    torch.fx cannot trace every architecture; those, and any fusion that changes the
    answers, keep the model as trained.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        fused = fuse(model)
    except Exception as error:  # noqa: BLE001 - fx tracing fails in many ways; optional
        logger.info("serving the model unfused (%s: %s)", type(error).__name__, error)
        return model
    probe = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        device = next(model.parameters()).device
        reference = torch.softmax(logits_of(model(probe.to(device))).float(), dim=1)
        candidate = torch.softmax(logits_of(fused(probe.to(device))).float(), dim=1)
    difference = float((reference - candidate).abs().max())
    if difference > FUSION_TOLERANCE:
        logger.warning("conv-bn fusion changed probabilities by %.2g: serving unfused", difference)
        return model
    return fused


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
        model: nn.Module | InferenceBackend,
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
        """``model`` is a trained module (served by PyTorch) or an engine from classifier.inference."""
        if isinstance(model, InferenceBackend):
            self.backend = model
        else:
            module = model.eval().to(memory_format=torch.channels_last)
            if fuse:
                module = fuse_for_inference(module, spec.image_size)
            self.backend = TorchBackend(module, device)
        self.spec = spec
        self.device = torch.device(device)
        self.transform = eval_transform(spec.image_size, spec.mean, spec.std)
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
    def model(self) -> nn.Module | None:
        """The PyTorch module being served, if PyTorch serves it."""
        return self.backend.model if isinstance(self.backend, TorchBackend) else None

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def precision(self) -> str:
        return self.backend.precision

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "cpu",
        *,
        backend: str = selection.AUTO,
        precision: str = selection.AUTO,
        threads: int = 1,
        **options,
    ) -> Predictor:
        """Load the model directory training wrote (or its model.tar.gz) on the engine that
        :func:`classifier.inference.selection.choose` picks; start and warm up."""
        started = time.perf_counter()
        model_dir = resolve_model_dir(model_dir)
        spec = load_model_spec(model_dir)
        choice = selection.choose(model_dir, spec, device, backend, precision)
        if choice.backend == selection.OPENVINO:
            engine = OpenVinoBackend(choice.file, choice.precision, threads)
        elif choice.backend == selection.ONNXRUNTIME:
            engine = OnnxRuntimeBackend(choice.file, threads)
        else:
            engine = load_model(model_dir, device)[0]
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
        side = resize_size_for(self.spec.image_size)
        buffer = io.BytesIO()
        Image.new("RGB", (side, side), (127, 127, 127)).save(buffer, "PNG")
        tensor = self.prepare(buffer.getvalue())
        self.predict([tensor], 1)
        if self.max_batch_size > 1:
            self._forward([tensor] * self.max_batch_size)
        self._warm = True

    def prepare(self, data: bytes) -> torch.Tensor:
        """Decode and transform one encoded image in the caller's thread; at most
        ``max_concurrent_decodes`` at once, so concurrent large images cannot add up."""
        with self._decodes:
            image = decode_image(data, self.max_image_pixels, resize_size_for(self.spec.image_size))
            self._check_resized_size(image.size)
            return self.transform(image)

    def _check_resized_size(self, size: tuple[int, int]) -> None:
        """A 1x60000 strip would be resized to gigapixels before the centre crop; refuse it."""
        short, long = min(size), max(size)
        resize = resize_size_for(self.spec.image_size)
        resized_pixels = resize * (resize * long / short)
        if resized_pixels > self.max_image_pixels:
            raise InvalidInput(
                f"image of {size[0]}x{size[1]} has too extreme an aspect ratio: resizing its "
                f"short side to {resize} would make {int(resized_pixels)} pixels"
            )

    def predict(self, tensors: list[torch.Tensor], top_k: int) -> list[list[dict]]:
        """Top-k predictions per prepared tensor, in order; k is capped at the class count."""
        futures = [self.batcher.submit(tensor) for tensor in tensors]
        try:
            rows = [future.result(timeout=self.timeout_s) for future in futures]
        except FutureTimeoutError as error:
            for future in futures:
                future.cancel()
            raise ModelTimeout(f"no prediction within {self.timeout_s:g} s") from error
        k = min(top_k, self.spec.num_classes)
        return [self._top_k(row, k) for row in rows]

    def _top_k(self, probabilities: torch.Tensor, k: int) -> list[dict]:
        values, indices = torch.topk(probabilities, k)
        names = self.spec.class_names
        return [
            {"label": names[index], "index": index, "probability": value}
            for value, index in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    def _forward(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Softmax probabilities on the CPU, one row per input."""
        return torch.softmax(self.backend.logits(tensors), dim=1)
