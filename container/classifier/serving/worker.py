"""One gunicorn worker's share of the machine, and how it loads a model directory onto it.

Used by the single-model worker (``app``) and the multi-model one (``multi_model_app``),
so both run every model with the same engine choice, batching, limits and thread budget.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from pathlib import Path

from classifier.serving.batching import ThreadBudget
from classifier.serving.config import ServingSettings
from classifier.serving.predictor import Predictor


def prepare_worker(
    settings: ServingSettings, slot: int | None, busy_flags: MutableSequence[int] | None, device_index: int
) -> tuple[str, Callable[[Path], Predictor]]:
    """This worker's device, and a function that loads, starts and warms up a model on it.

    torch is imported here only for a GPU; on the CPU the engine imports it if PyTorch serves.
    """
    budget = ThreadBudget(
        settings.cpu_count, fixed_threads=settings.torch_threads, busy_flags=busy_flags, slot=slot
    )
    device = "cpu"
    if settings.device == "cuda":
        import torch

        device = f"cuda:{device_index % settings.gpu_count}"
        torch.cuda.set_device(device)

    def load(model_dir: Path) -> Predictor:
        return Predictor.load(
            model_dir,
            device,
            max_batch_size=settings.max_batch_size,
            max_delay_s=settings.max_batch_delay_ms / 1000,
            budget=budget,
            max_image_pixels=settings.max_image_pixels,
            max_concurrent_decodes=settings.max_concurrent_decodes,
            default_top_k=settings.default_top_k,
            timeout_s=settings.timeout_s,
            backend=settings.inference_backend,
            precision=settings.inference_precision,
            threads=settings.threads_when_alone(),
        )

    return device, load
