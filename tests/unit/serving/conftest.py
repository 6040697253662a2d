"""A tiny real model directory and a Flask test client over the real Predictor.

resnet18 with three classes at 32x32 keeps each forward pass at a few milliseconds on
2 cores while going through exactly the code the server runs.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classifier.artifacts import ModelSpec, load_model, save_model
from classifier.models import create_model
from classifier.serving.app import create_app
from classifier.serving.config import ServingSettings
from classifier.serving.predictor import Predictor

CLASS_NAMES = ("cat", "dog", "owl")
IMAGE_SIZE = 32


def make_model_dir(root: Path, class_names=CLASS_NAMES, image_size=IMAGE_SIZE) -> Path:
    torch.manual_seed(0)
    model = create_model("resnet18", len(class_names))
    spec = ModelSpec("resnet18", tuple(class_names), image_size)
    return save_model(root / "model", model.state_dict(), spec)


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A noisy RGB picture: real pixel variety, so different images give different answers."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def settings_for(base_dir: Path, **env) -> ServingSettings:
    environment = {"SAGEMAKER_BASE_DIR": str(base_dir), **{k: str(v) for k, v in env.items()}}
    return ServingSettings.from_env(environment, cpu_count=2, gpu_count=0)


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sagemaker")
    make_model_dir(root)
    return root


@pytest.fixture(scope="session")
def predictor(base_dir):
    predictor = Predictor.load(base_dir / "model", "cpu", max_batch_size=4)
    yield predictor
    predictor.close()


@pytest.fixture(scope="session")
def reference_model(base_dir):
    """The model as trained (the predictor serves a conv-bn fused copy)."""
    return load_model(base_dir / "model")[0]


@pytest.fixture(scope="session")
def settings(base_dir) -> ServingSettings:
    return settings_for(base_dir)


@pytest.fixture
def client(predictor, settings):
    return create_app(predictor, settings).test_client()


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    return encode(photo(), "JPEG", quality=95)
