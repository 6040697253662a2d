"""``sm-classifier``: every step from data to a deployed endpoint, on SageMaker or locally.

Each subcommand is a thin layer over one library module; ``--local`` runs the same step
in SDK local mode / the same container on this machine. Progress and SDK logs go to
stderr, results to stdout.

The parser is in ``parser``; the handlers are grouped by what they act on: ``data_commands``
(metric definitions, data upload, image push), ``training_commands`` (train, tune, best)
and ``endpoint_commands`` (deploy, invoke, delete).
"""

from __future__ import annotations

import logging
import sys

from classifier_client.cli.parser import build_parser
from classifier_client.config import ConfigurationError

__all__ = ["build_parser", "main"]


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        for name in ("sagemaker", "sagemaker.config", "botocore", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        return args.func(args)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NoCredentialsError:
        print("error: no AWS credentials (aws configure / AWS_PROFILE / --profile)", file=sys.stderr)
        return 2
    except NoRegionError:
        print("error: no AWS region (--region or AWS_REGION)", file=sys.stderr)
        return 2
    except ClientError as error:
        info = error.response.get("Error", {})
        print(f"error: AWS {info.get('Code')}: {info.get('Message')}", file=sys.stderr)
        return 1
    except BotoCoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
