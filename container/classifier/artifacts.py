"""The model directory: the contract between training and serving.

It holds ``model.pt`` (a state_dict) and ``model_config.json`` (architecture, class
names in index order, image size, normalisation). The server needs nothing else.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from classifier import archives, constants
from classifier.preprocessing import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, resize_size_for

# 2: the eval preprocessing (resize size and interpolation) is saved with the weights. A format-1
# config has neither: its model is served as it always was, resized to image_size / 0.875, bilinear.
FORMAT_VERSION = 2


class ModelArtifactError(RuntimeError):
    """The model directory is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class ModelSpec:
    architecture: str
    class_names: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)
    # Exported inference forms and their measured parity (classifier.inference.export).
    exports: dict = field(default_factory=dict)
    # The eval preprocessing the model was validated with: short side to resize_size, then the
    # centre crop of image_size (None in a format-1 config: derived as it always was).
    resize_size: int | None = None
    interpolation: str = "bilinear"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def eval_resize(self) -> int:
        return self.resize_size if self.resize_size is not None else resize_size_for(self.image_size)

    def to_json(self) -> str:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "model_config.json") -> ModelSpec:
        try:
            data = json.loads(text)
            spec = cls(
                architecture=str(data["architecture"]),
                class_names=tuple(str(name) for name in data["class_names"]),
                image_size=int(data["image_size"]),
                mean=tuple(float(v) for v in data.get("mean", IMAGENET_MEAN)),
                std=tuple(float(v) for v in data.get("std", IMAGENET_STD)),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
                extra=dict(data.get("extra", {})),
                exports=dict(data.get("exports", {})),
                resize_size=int(data["resize_size"]) if data.get("resize_size") is not None else None,
                interpolation=str(data.get("interpolation", "bilinear")),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ModelArtifactError(f"{source} is not a valid model config: {error!r}") from error
        if spec.interpolation not in INTERPOLATIONS:
            raise ModelArtifactError(
                f"{source}: interpolation {spec.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}"
            )
        if spec.eval_resize < 1:
            raise ModelArtifactError(f"{source}: resize_size must be a positive number of pixels")
        if spec.num_classes < 1 or len(set(spec.class_names)) != spec.num_classes:
            raise ModelArtifactError(f"{source}: class_names must be non-empty and unique")
        return spec


def save_model(model_dir: str | os.PathLike, state_dict: dict, spec: ModelSpec) -> Path:
    """Write weights and config; the config last, so a present config means a complete model."""
    import torch

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, model_dir / constants.MODEL_WEIGHTS_FILE)
    write_model_config(model_dir, spec)
    return model_dir


def write_model_config(model_dir: str | os.PathLike, spec: ModelSpec) -> None:
    """Replace model_config.json atomically: a reader sees the old config or the new one."""
    config_path = Path(model_dir) / constants.MODEL_CONFIG_FILE
    tmp = config_path.with_suffix(".json.tmp")
    tmp.write_text(spec.to_json())
    tmp.replace(config_path)


def resolve_model_dir(model_dir: str | os.PathLike) -> Path:
    """The folder that holds the model files: ``model_dir``, or where its archive was unpacked.

    SageMaker unpacks model.tar.gz into /opt/ml/model for us; `docker run` users may drop the
    archive in as is, often on a read-only mount. Then it is unpacked next to it when the folder
    is writable, otherwise into a scratch folder keyed by the archive, once for all workers.
    """
    model_dir = Path(model_dir)
    archive = model_dir / constants.MODEL_ARCHIVE_FILE
    if (model_dir / constants.MODEL_CONFIG_FILE).exists() or not archive.is_file():
        return model_dir
    target = model_dir if os.access(model_dir, os.W_OK) else _scratch_dir_for(archive)
    if (target / constants.MODEL_CONFIG_FILE).exists():
        return target
    # Unpack aside and rename, the config last: a worker never sees a half-written model.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging_parent = model_dir if target == model_dir else target.parent
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=staging_parent))
    try:
        archives.extract(archive, staging)
        if target == model_dir:
            entries = sorted(staging.iterdir(), key=lambda e: e.name == constants.MODEL_CONFIG_FILE)
            for entry in entries:
                entry.replace(model_dir / entry.name)
        else:
            try:
                staging.replace(target)
            except OSError:
                if not (target / constants.MODEL_CONFIG_FILE).exists():  # not a concurrent twin
                    raise
    except archives.ArchiveError as error:
        raise ModelArtifactError(str(error)) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _scratch_dir_for(archive: Path) -> Path:
    return archives.scratch_folder(archive, Path(tempfile.gettempdir()) / "classifier-models")


def load_model_spec(model_dir: str | os.PathLike) -> ModelSpec:
    model_dir = resolve_model_dir(model_dir)
    config_path = model_dir / constants.MODEL_CONFIG_FILE
    if not config_path.exists():
        present = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else "missing"
        raise ModelArtifactError(
            f"no {constants.MODEL_CONFIG_FILE} in model directory {model_dir} (contents: {present})"
        )
    return ModelSpec.from_json(config_path.read_text(), str(config_path))


def load_model(model_dir: str | os.PathLike, device: str = "cpu"):
    """The trained network in eval mode on ``device``, and its spec."""
    import torch

    from classifier.models import create_model

    model_dir = resolve_model_dir(model_dir)
    spec = load_model_spec(model_dir)
    weights_path = model_dir / constants.MODEL_WEIGHTS_FILE
    if not weights_path.exists():
        raise ModelArtifactError(f"no {constants.MODEL_WEIGHTS_FILE} in model directory {model_dir}")
    model = create_model(spec.architecture, spec.num_classes)
    try:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as error:
        # A damaged or foreign file: UnpicklingError, EOFError or a zip RuntimeError, by damage.
        raise ModelArtifactError(
            f"{weights_path} is not a readable state_dict: {type(error).__name__}: {str(error)[:300]}"
        ) from error
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        raise ModelArtifactError(
            f"{weights_path} does not fit {spec.architecture} with {spec.num_classes} classes: "
            f"{str(error).splitlines()[0]}"
        ) from error
    return model.to(device).eval(), spec
