"""Per-epoch checkpoints in /opt/ml/checkpoints, which SageMaker syncs to S3 for spot jobs."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

from classifier.errors import JobInputError

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointMismatchError(JobInputError):
    """The checkpoint found was written by a job with another model or class list."""


class CheckpointUnreadableError(JobInputError):
    """The checkpoint file is corrupt, or holds objects other than tensors and plain data."""


def save_checkpoint(checkpoint_dir: Path, state: dict) -> Path:
    """Atomic: a job killed mid-write leaves the previous checkpoint intact."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_dir / CHECKPOINT_FILE
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(checkpoint_dir: Path, identity: dict) -> dict | None:
    """The last checkpoint, if any, after checking it belongs to this model and class list."""
    path = checkpoint_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    # SageMaker syncs this folder from S3, so whoever can write to the checkpoint prefix
    # controls this file: never unpickle arbitrary objects from it.
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointUnreadableError(
            f"checkpoint {path} cannot be loaded safely (only tensors and plain data are "
            f"accepted): {first_line}. Remove it or use a fresh checkpoint location"
        ) from error
    found = state.get("identity", {})
    if found != identity:
        differences = sorted(k for k in set(found) | set(identity) if found.get(k) != identity.get(k))
        raise CheckpointMismatchError(
            f"checkpoint {path} was written for another job ({', '.join(differences)} differ: "
            f"{ {k: found.get(k) for k in differences} } vs { {k: identity.get(k) for k in differences} }); "
            "use a fresh checkpoint location or remove it"
        )
    logger.info("resuming from %s (epoch %d completed)", path, state["epoch"])
    return state
