"""Small engine classes behind one interface: a list of prepared image tensors in, logits out.

The micro-batcher and the server call only :class:`InferenceBackend`; what differs per
engine is how a batch is laid out, how threads are set, and what precision runs.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import nn

from classifier.models import logits_of

logger = logging.getLogger(__name__)

FP32, BF16, INT8 = "fp32", "bf16", "int8"
# What OpenVINO computes in for each precision. The int8 model keeps f32 for the few operations
# NNCF leaves unquantized, so its measured parity does not depend on bf16 hardware (the server
# still serves int8 only on CPUs with VNNI or AMX, see selection._cpu_supports).
_OPENVINO_HINTS = {FP32: "f32", BF16: "bf16", INT8: "f32"}


class InferenceBackend(ABC):
    """One engine running one model; called from a single thread (the micro-batcher)."""

    name: str
    precision: str = FP32

    @abstractmethod
    def logits(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Float32 logits on the CPU, one row per input tensor, in order."""

    @abstractmethod
    def set_threads(self, threads: int) -> None:
        """The intra-op threads the next batches may use (see serving.batching.ThreadBudget)."""

    def describe(self) -> str:
        return f"{self.name} {self.precision}"


class TorchBackend(InferenceBackend):
    """Eager PyTorch: the trained module, channels-last; the GPU path."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu"):
        self.model = model
        self.device = torch.device(device)

    def set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)

    @torch.inference_mode()
    def logits(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        batch = torch.empty(
            (len(tensors), *tensors[0].shape), dtype=tensors[0].dtype, memory_format=torch.channels_last
        )
        for row, tensor in zip(batch, tensors, strict=True):
            row.copy_(tensor)
        return logits_of(self.model(batch.to(self.device, non_blocking=True))).float().cpu()


def _stack(tensors: list[torch.Tensor]) -> np.ndarray:
    return torch.stack(tensors).contiguous().numpy()


class OpenVinoBackend(InferenceBackend):
    """OpenVINO on the CPU from the IR training exported (compiling saved IR takes well under
    a second; converting the PyTorch model at start-up would take about ten). ``xml_path`` is
    the IR of the precision: the int8 model is an IR of its own.

    OpenVINO fixes its thread count when a model is compiled, so one compiled model is kept
    per thread count the budget asks for (a lone request gets every core, busy workers share
    them), each with one stream: the micro-batcher already batches, more streams would only
    split the cores again. Cores are not pinned: several worker processes share them.
    """

    name = "openvino"

    def __init__(self, xml_path: Path, precision: str = FP32, threads: int = 1):
        import openvino as ov

        self._core = ov.Core()
        self._model = self._core.read_model(str(xml_path))
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

    def logits(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        request = self._request_for(self._threads)
        output = request.infer({0: _stack(tensors)})[0]
        return torch.from_numpy(np.array(output, dtype=np.float32, copy=True))


class OnnxRuntimeBackend(InferenceBackend):
    """ONNX Runtime on the CPU, for hosts where OpenVINO is not installed.

    Not in the image: onnxruntime needs protobuf >= 4.25 and smdebug (last release 1.0.34)
    needs protobuf <= 3.20.3 in the same environment. A serving-only environment can add it.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, threads: int = 1):
        import onnxruntime as ort

        self._ort = ort
        self._path = str(onnx_path)
        self._sessions: dict[int, object] = {}
        self._threads = max(1, threads)
        self.set_threads(self._threads)

    def _session_for(self, threads: int):
        if threads not in self._sessions:
            options = self._ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._sessions[threads] = self._ort.InferenceSession(
                self._path, options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[threads]

    def set_threads(self, threads: int) -> None:
        self._threads = max(1, threads)
        self._session_for(self._threads)

    def logits(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        session = self._session_for(self._threads)
        name = session.get_inputs()[0].name
        return torch.from_numpy(np.asarray(session.run(None, {name: _stack(tensors)})[0], dtype=np.float32))
