"""Errors the user can fix, kept apart from faults of the program.

sagemaker-training's convention (``sagemaker_training.errors.ClientError``: "Error class used
to separate framework and user errors"): a user error reaches ``output/failure`` as its
message alone, which names the file, channel or key to change; any other error also carries
its traceback, for whoever debugs the program.
"""

from __future__ import annotations

from sagemaker_training.errors import ClientError


class JobInputError(ClientError):
    """Data, configuration, hyperparameters or a checkpoint given to the job cannot be used."""
