"""What several subcommands share: the AWS context, the image URI, JSON on stdout."""

from __future__ import annotations

import json
import sys

from classifier_client.endpoints import LOCAL_IMAGE as LOCAL_IMAGE_DEFAULT
from classifier_client.endpoints import LOCAL_SERVING_IMAGE

# The channel options of train and tune: each overrides what --data finds.
CHANNEL_HELP = {
    "train": "training images (ImageFolder or one .zip/.tar.gz of it)",
    "valid": "validation images",
    "test": "test images (optional; evaluated once at the end)",
    "pretrained": "a torchvision state_dict for jobs without internet (optional)",
}


def aws_context_for(args, *, local: bool = False):
    # Looked up on the module at call time, so tests can swap in a recording context.
    from classifier_client import config

    return config.aws_context(
        region=getattr(args, "region", None),
        profile=getattr(args, "profile", None),
        role_arn=getattr(args, "role", None),
        local=local,
    )


def image_uri(args, local: bool) -> str | None:
    """``--image``; else the local image, or None: the newest image `push` put in the account's
    repository, which the library looks up (and pins by digest) after its offline checks.
    ``--serving-image`` picks the serving image's (docs/image.md)."""
    if args.image:
        return args.image
    if local:
        return LOCAL_SERVING_IMAGE if getattr(args, "serving_image", False) else LOCAL_IMAGE_DEFAULT
    return None


def print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def account_flags(args):
    from classifier_client.account_settings import AccountFlags, parse_ids, parse_tags

    return AccountFlags(
        subnets=parse_ids(args.subnets, "--subnets"),
        security_group_ids=parse_ids(args.security_group_ids, "--security-group-ids"),
        kms_key=args.kms_key,
        network_isolation=args.network_isolation,
        inter_container_encryption=getattr(args, "encrypt_inter_container_traffic", False),
        tags=parse_tags(args.tag),
    )


def account_settings(args, local: bool = False, requests: tuple[str, ...] = ("training",)):
    """The account's settings for the command's SageMaker ``requests`` (see
    AccountSettings.applied_locally); in local mode, none, and one line that says which of
    those set it does not apply."""
    from classifier_client.account_settings import AccountSettings

    settings = AccountSettings.load(account_flags(args))
    if not local:
        return settings
    ignored = settings.applied_locally(requests)
    if getattr(args, "max_retries", None):
        ignored.append("retries")
    if ignored:
        print(f"local mode does not apply: {', '.join(ignored)} (sent to SageMaker only)", file=sys.stderr)
    return AccountSettings()
