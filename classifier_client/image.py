"""Build and push the image by running ``build_and_push.sh`` (one implementation of the
ECR logic: create the repository if missing, log in, tag, push) and returning the image
reference it prints on its last stdout line.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from classifier_client.config import ConfigurationError

DEFAULT_IMAGE_NAME = "sagemaker-image-classifier"
DEFAULT_TAG = "latest"
SCRIPT_NAME = "build_and_push.sh"


def repository_root() -> Path:
    """The checkout holding build_and_push.sh (the client is installed editable from it)."""
    here = Path(__file__).resolve().parent.parent
    if (here / SCRIPT_NAME).exists():
        return here
    raise ConfigurationError(
        f"{SCRIPT_NAME} not found next to the client package ({here}); run `push` from a "
        "checkout of this repository (pip install -e .)"
    )


@dataclass(frozen=True)
class PushOptions:
    name: str = DEFAULT_IMAGE_NAME
    tag: str = DEFAULT_TAG
    region: str | None = None
    account: str | None = None
    registry: str | None = None
    push: bool = True
    build: bool = True
    base_image: str | None = None

    def arguments(self) -> list[str]:
        args = ["--name", self.name, "--tag", self.tag]
        if self.region:
            args += ["--region", self.region]
        if self.account:
            args += ["--account", self.account]
        if self.registry:
            args += ["--registry", self.registry]
        if self.base_image:
            args += ["--base-image", self.base_image]
        if not self.build:
            args.append("--skip-build")
        if not self.push:
            args.append("--no-push")
        return args


def push_image(options: PushOptions, script: Path | None = None) -> str:
    """Run the script (its progress goes to our stderr); returns the pushed image reference."""
    script = script or repository_root() / SCRIPT_NAME
    env = dict(os.environ)
    if options.region:
        env["AWS_REGION"] = options.region
    completed = subprocess.run(
        ["bash", str(script), *options.arguments()],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if completed.returncode != 0 or not lines:
        raise ConfigurationError(
            f"{script.name} failed with exit code {completed.returncode}; see its messages above"
        )
    return lines[-1].strip()
