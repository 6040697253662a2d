"""Small engine classes behind one interface: a batch of pixels in, logits out.

A batch is ``(N, H, W, 3)`` uint8 (see :mod:`classifier.preprocessing`); each engine
normalizes it where it runs cheapest: OpenVINO inside the compiled graph, PyTorch on its
device (:mod:`classifier.inference.torch_backend`). Nothing here imports torch, so a server
running OpenVINO never loads it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifier.constants import PrecisionName
from classifier.preprocessing import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

# What OpenVINO computes in for each precision. The int8 model keeps f32 for the few operations
# NNCF leaves unquantized, so its measured parity does not depend on bf16 hardware (the server
# still serves int8 only on CPUs with VNNI or AMX, see selection.cpu_supports).
_OPENVINO_HINTS = {PrecisionName.FP32: "f32", PrecisionName.BF16: "bf16", PrecisionName.INT8: "f32"}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, shifted by each row's maximum so large logits cannot overflow."""
    shifted = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


class InferenceBackend(ABC):
    """One engine running one model; never called from two threads at once."""

    name: str
    precision: PrecisionName = PrecisionName.FP32

    @abstractmethod
    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """float32 logits, one row per image of the ``(N, H, W, 3)`` uint8 batch, in order."""

    @abstractmethod
    def set_threads(self, threads: int) -> None:
        """The intra-op threads the next batches may use (see serving.batching.ThreadBudget)."""

    def describe(self) -> str:
        return f"{self.name} {self.precision}"


class OpenVinoBackend(InferenceBackend):
    """OpenVINO on the CPU from the IR training exported (compiling saved IR takes well under
    a second; converting the PyTorch model at start-up would take about ten). ``xml_path`` is
    the IR of the precision: the int8 model is an IR of its own.

    The IR takes normalized float32 NCHW; OpenVINO's preprocessing API puts the layout change,
    the conversion from u8 and the normalization in front of it, in the compiled graph.

    OpenVINO fixes its thread count when a model is compiled, so one compiled model is kept
    per thread count the budget asks for (a lone request gets every core, busy workers share
    them), each with one stream: the micro-batcher already batches, more streams would only
    split the cores again. Cores are not pinned: several worker processes share them.
    """

    name = "openvino"

    def __init__(
        self,
        xml_path: Path,
        precision: PrecisionName = PrecisionName.FP32,
        threads: int = 1,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        import openvino as ov

        self._core = ov.Core()
        self._model = _with_pixel_input(self._core.read_model(str(xml_path)), mean, std)
        self.precision = precision
        self._compiled: dict[int, object] = {}
        self._threads = max(1, threads)
        self.set_threads(self._threads)

    def _request_for(self, threads: int):
        if threads not in self._compiled:
            config = {
                "INFERENCE_PRECISION_HINT": _OPENVINO_HINTS[self.precision],
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
                "INFERENCE_NUM_THREADS": threads,
                "ENABLE_CPU_PINNING": False,
            }
            compiled = self._core.compile_model(self._model, "CPU", config)
            self._compiled[threads] = compiled.create_infer_request()
        return self._compiled[threads]

    def set_threads(self, threads: int) -> None:
        self._threads = max(1, threads)
        self._request_for(self._threads)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        request = self._request_for(self._threads)
        # share_outputs: no copy out of OpenVINO's buffer; the float32 copy below owns the rows.
        output = request.infer({0: pixels}, share_inputs=True, share_outputs=True)[0]
        return np.array(output, dtype=np.float32, copy=True)


def _with_pixel_input(model, mean: Sequence[float], std: Sequence[float]):
    """``model`` with a u8 NHWC input: ``(x - 255 mean) / (255 std)`` equals ``(x / 255 - mean) / std``."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean([255 * m for m in mean]).scale(
        [255 * s for s in std]
    )
    return ppp.build()
