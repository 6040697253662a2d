"""Why the multi-model registry cannot do what it was asked, in its own terms.

The registry raises these and never names an HTTP status: :mod:`classifier.serving.http` maps
each class to the status SageMaker's multi-model contract expects (``MODEL_ERROR_STATUS``).
"""

from __future__ import annotations


class ModelError(Exception):
    """A model the registry cannot load, find or unload; the message is for the caller."""


class ModelNotLoaded(ModelError):
    """No model of that name is loaded."""


class ModelAlreadyLoaded(ModelError):
    """A model of that name is loaded, being loaded, or being loaded again."""


class ModelRestoring(ModelError):
    """The model is being loaded again after a worker restart: the caller should retry."""


class ModelNotFound(ModelError):
    """The model's url does not exist in the container."""


class ModelLoadFailed(ModelError):
    """The model's artefact is not a servable model."""


class ModelLoadRefused(ModelError):
    """Not enough memory or another resource to load: SageMaker unloads unused models and retries."""
