"""What ``train`` and ``serve`` run: in the image, or from a checkout without activating a venv.

From a checkout, ``./train`` may start under a system ``python3`` that lacks torch. Then the
checkout's ``.venv`` (``make setup``) takes over the process, so ``SAGEMAKER_BASE_DIR=… ./train``
works in a fresh shell. Standard library only until the hand-over.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from classifier import constants

TRAINING_MODULES = ("torch", "flask")
SERVING_MODULES = ("flask", "gunicorn", "numpy", "PIL")


def _hand_over_to_checkout_venv(script: Path, modules: tuple[str, ...]) -> None:
    if all(importlib.util.find_spec(name) is not None for name in modules):
        return
    venv = script.resolve().parent / ".venv"
    venv_python = venv / "bin" / "python"
    # A venv's python links to its base interpreter: compare prefixes, not executables.
    if venv_python.is_file() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(venv_python, [str(venv_python), str(script), *sys.argv[1:]])
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    sys.exit(f"{script.name}: {sys.executable} lacks {', '.join(missing)}; run `make setup` in the checkout")


def train(script: str) -> None:
    if os.environ.get(constants.IMAGE_KIND_ENV) == constants.SERVING_IMAGE_KIND:
        sys.exit(
            "train: this is the serving image, which holds neither PyTorch nor the training code; "
            f"train with the full image ({constants.FULL_IMAGE_NAME}, `make image`), and serve the "
            "model it writes with either image"
        )
    _hand_over_to_checkout_venv(Path(script), TRAINING_MODULES)
    from classifier.training.program import main

    main()


def serve(script: str) -> int:
    _hand_over_to_checkout_venv(Path(script), SERVING_MODULES)
    from classifier.serving.serve import main

    return main()
