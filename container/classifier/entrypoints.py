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

RUNTIME_MODULES = ("torch", "flask")


def _hand_over_to_checkout_venv(script: Path) -> None:
    if all(importlib.util.find_spec(name) is not None for name in RUNTIME_MODULES):
        return
    venv = script.resolve().parent / ".venv"
    venv_python = venv / "bin" / "python"
    # A venv's python links to its base interpreter: compare prefixes, not executables.
    if venv_python.is_file() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(venv_python, [str(venv_python), str(script), *sys.argv[1:]])
    missing = [name for name in RUNTIME_MODULES if importlib.util.find_spec(name) is None]
    sys.exit(f"{script.name}: {sys.executable} lacks {', '.join(missing)}; run `make setup` in the checkout")


def train(script: str) -> None:
    _hand_over_to_checkout_venv(Path(script))
    from classifier.training.program import main

    main()


def serve(script: str) -> int:
    _hand_over_to_checkout_venv(Path(script))
    from classifier.serving.serve import main

    return main()
