"""``serve``: what SageMaker runs as ``docker run IMAGE serve``.

The settings and the model directory are checked in the master, before gunicorn
starts, so a broken environment or a missing model fails at once with a readable
reason and a non-zero exit instead of a green /ping. The master only reads the JSON
config; workers load the weights after fork.

torch is imported only inside :func:`main`, after the OpenMP defaults are in the
environment: libgomp reads them once, when it is loaded.
"""

from __future__ import annotations

import logging
import os
import sys

from classifier import constants
from classifier.serving.config import ServingConfigError, ServingSettings

logger = logging.getLogger("classifier.serving")

LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
EXIT_CONFIG_ERROR = 2
EXIT_MODEL_ERROR = 3
# Idle OpenMP threads sleep instead of spinning: with the default spin, a forward pass on
# 2 threads whose cores are shared (other workers, request threads decoding) measured
# ~15x slower. A user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT wins.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT, stream=sys.stderr, force=True
    )


def apply_openmp_defaults(environ=os.environ) -> None:
    if "GOMP_SPINCOUNT" in environ:
        return
    for name, value in OPENMP_DEFAULTS.items():
        environ.setdefault(name, value)


def main() -> int:
    apply_openmp_defaults()
    configure_logging("INFO")
    try:
        settings = ServingSettings.from_env()
    except ServingConfigError as error:
        logger.error("invalid serving configuration: %s", error)
        return EXIT_CONFIG_ERROR
    configure_logging(settings.log_level)

    from classifier.artifacts import ModelArtifactError, load_model_spec, resolve_model_dir

    spec = None
    try:
        # A multi-model endpoint has no /opt/ml/model: SageMaker loads models through POST /models.
        if not settings.multi_model:
            spec = load_model_spec(settings.model_dir)
            from classifier.inference.selection import require_engine

            # The folder the files are in: an archive on a read-only mount is unpacked elsewhere.
            require_engine(resolve_model_dir(settings.model_dir), spec, settings.inference_backend)
    except (ModelArtifactError, OSError) as error:
        logger.error(
            "no servable model in %s (set %s to change the root): %s",
            settings.model_dir,
            constants.BASE_DIR_ENV,
            error,
        )
        return EXIT_MODEL_ERROR

    from gunicorn.errors import HaltServer

    from classifier.serving.gunicorn_app import ServingApplication

    try:
        ServingApplication(settings, spec).run()
    except HaltServer as halt:
        # gunicorn 27 re-raises HaltServer while stopping when every worker failed to boot.
        logger.error("the server stopped: %s (exit status %d)", halt.reason, halt.exit_status)
        return halt.exit_status or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
