"""Building the engine :func:`classifier.inference.selection.choose` picked, from a model directory."""

from __future__ import annotations

from pathlib import Path

from classifier.artifacts import ModelSpec
from classifier.inference import selection
from classifier.inference.backends import InferenceBackend, OpenVinoBackend


def load_engine(
    model_dir: Path,
    spec: ModelSpec,
    device: str = "cpu",
    choice: selection.Choice | None = None,
    threads: int = 1,
) -> InferenceBackend:
    """The engine of ``choice`` (by default :func:`selection.choose`'s) running the model in ``model_dir``.

    torch is imported only when PyTorch runs the model.
    """
    choice = choice or selection.choose(model_dir, spec, device)
    if choice.backend == selection.OPENVINO:
        assert choice.file is not None, "selection names the file of an OpenVINO choice"
        return OpenVinoBackend(choice.file, choice.precision, threads, spec.mean, spec.std)
    import torch

    from classifier.artifacts import load_model
    from classifier.inference.torch_backend import TorchBackend

    torch.set_num_threads(threads)
    model = load_model(model_dir, device)[0]
    return TorchBackend.for_serving(model, spec.image_size, device, mean=spec.mean, std=spec.std)
