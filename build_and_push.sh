#!/usr/bin/env bash
# Build the image (container/Dockerfile) for linux/amd64 and push it to Amazon ECR (default:
# account and region discovered, repository created if missing, docker login with an ECR token)
# or to any other registry given with --registry. The image reference is printed alone on the
# last line of stdout; everything else goes to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$repo_root/scripts/common.sh"

usage() {
    cat <<EOF
Usage: $(basename "$0") [options]

Build:
  -n, --name NAME         image/repository name (default: sagemaker-image-classifier, or
                          sagemaker-image-classifier-serve with --serve-only)
  --serve-only            the serving image (Dockerfile stage serve: no torch, no training),
                          named NAME-serve (docs/image.md)
  -t, --tag TAG           image tag (default: latest; pushed to ECR: build-<UTC time>, unique,
                          as the repository's tags are immutable)
  --base-image IMAGE      build arg BASE_IMAGE (default: \$BASE_IMAGE or python:3.11-slim-bookworm)
  --wheelhouse DIR        wheel folder for an offline build, served to the build on 127.0.0.1
                          (default: container/wheelhouse; see scripts/build_wheelhouse.sh)
  --build-arg KEY=VALUE   extra docker build argument (repeatable), e.g.
                          PRETRAINED_MODELS="resnet18 resnet50" or TORCH_INDEX_URL=...
  --no-cache              build every layer anew (docker build --no-cache)
  --skip-build            push an already built NAME:TAG instead of building it
  --no-push               build only; nothing leaves this machine

Push (default: Amazon ECR):
  -r, --region REGION     AWS region (default: \$AWS_REGION, \$AWS_DEFAULT_REGION, or the profile's)
  -a, --account ID        AWS account ID (default: from STS GetCallerIdentity)
  --registry HOST[/PATH]  push to this registry instead of ECR (e.g. 127.0.0.1:5000 or
                          ghcr.io/org); log in beforehand with \`docker login\` if it needs it
  --mutable-tags          an ECR repository this creates lets a tag move (default: immutable)
  --repository-tag K=V    a tag on the ECR repository this creates (repeatable)
  --kms-key KEY           an ECR repository this creates encrypts its images with this KMS key
  -h, --help              show this help

A repository this creates scans each image on push and has immutable tags. The last line of
stdout is the pushed image by digest (REPOSITORY@sha256:...), what SageMaker requests should name.
The image is always built for --platform linux/amd64 (what SageMaker runs, also from Apple
silicon), with the legacy builder (DOCKER_BUILDKIT=0) so it works where BuildKit is missing.
The wheelhouse is served to the build on 127.0.0.1 (first free port from \$WHEELHOUSE_PORT,
default 39517) and the build runs with --network host.
ECR calls use boto3 from \$PYTHON, ./.venv-sdk, ./.venv or python3 (the first that has boto3);
they honour the usual AWS_* variables, including AWS_PROFILE and AWS_ENDPOINT_URL.

Examples:
  $(basename "$0") --no-push
  $(basename "$0") --region eu-west-1 --tag v1
  $(basename "$0") --registry 127.0.0.1:5000 --tag test
EOF
}


name="sagemaker-image-classifier"
target=""
tag="latest"
tag_given=0
mutability="IMMUTABLE"
repository_tags=()
kms_key=""
base_image="${BASE_IMAGE:-python:3.11-slim-bookworm}"
wheelhouse="container/wheelhouse"
region=""
account=""
registry=""
build=1
push=1
build_args=()
cache_args=()
while (($#)); do
    case "$1" in
        -n|--name) name="${2:?$1 needs a value}"; shift 2 ;;
        --serve-only) target="serve"; shift ;;
        -t|--tag) tag="${2:?$1 needs a value}"; tag_given=1; shift 2 ;;
        --base-image) base_image="${2:?$1 needs a value}"; shift 2 ;;
        --wheelhouse) wheelhouse="${2:?$1 needs a value}"; shift 2 ;;
        --build-arg) build_args+=(--build-arg "${2:?$1 needs KEY=VALUE}"); shift 2 ;;
        --no-cache) cache_args=(--no-cache); shift ;;
        --skip-build) build=0; shift ;;
        --no-push) push=0; shift ;;
        -r|--region) region="${2:?$1 needs a value}"; shift 2 ;;
        -a|--account) account="${2:?$1 needs a value}"; shift 2 ;;
        --registry) registry="${2:?$1 needs a value}"; shift 2 ;;
        --mutable-tags) mutability="MUTABLE"; shift ;;
        --repository-tag) repository_tags+=("${2:?$1 needs KEY=VALUE}"); shift 2 ;;
        --kms-key) kms_key="${2:?$1 needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
((build || push)) || die "--skip-build with --no-push leaves nothing to do"
if [[ "$target" == serve && "$name" != *-serve ]]; then
    # Never into the full image's repository: `train` would pull a torch-less image from it.
    name="$name-serve"
fi
[[ "$name" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] \
    || die "bad image name '$name': lower-case letters, digits and . _ - / only"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "bad tag '$tag'"

docker="${DOCKER:-docker}"
require_engine

local_ref="$name:$tag"
if ((!build)); then
    "$docker" image inspect "$local_ref" >/dev/null 2>&1 \
        || die "--skip-build: no local image $local_ref"
fi

# ---- ECR: region, account, repository and token first, so a missing credential fails fast ----
find_python() {
    local candidate
    for candidate in "${PYTHON:-}" "$repo_root/.venv-sdk/bin/python" "$repo_root/.venv/bin/python" \
        python3; do
        [[ -n "$candidate" ]] || continue
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import boto3' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# One boto3 call site: resolves region and account, creates the repository if missing and gets a
# login token. Prints "registry<TAB>username<TAB>password"; errors go to stderr, readable.
# Sets ecr_registry, ecr_user and ecr_password.
prepare_ecr() {
    local python output
    python="$(find_python)" || die "ECR push needs boto3: pip install boto3 (or set PYTHON)"
    output="$("$python" - "$name" "$region" "$account" "$mutability" "$kms_key" \
        ${repository_tags[@]+"${repository_tags[@]}"} <<'PY'
import base64
import sys

import boto3
import botocore.exceptions

name, region, account, mutability, kms_key = sys.argv[1:6]
tags = [dict(zip(("Key", "Value"), pair.split("=", 1))) for pair in sys.argv[6:]]
encryption = {"encryptionType": "KMS", "kmsKey": kms_key} if kms_key else {"encryptionType": "AES256"}
if any(len(tag) != 2 or not tag["Key"] for tag in tags):
    print("[build_and_push.sh] ERROR: --repository-tag takes KEY=VALUE", file=sys.stderr)
    sys.exit(1)


def fail(message):
    print(f"[build_and_push.sh] ERROR: {message}", file=sys.stderr)
    sys.exit(1)


try:
    session = boto3.session.Session(region_name=region or None)
    region = session.region_name
    if not region:
        fail("no AWS region: pass --region, or set AWS_REGION / AWS_DEFAULT_REGION, "
             "or configure one in the profile (aws configure)")
    if session.get_credentials() is None:
        fail("no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
             "or run 'aws configure' / 'aws sso login'")
    if not account:
        account = session.client("sts").get_caller_identity()["Account"]
    ecr = session.client("ecr")
    try:
        ecr.describe_repositories(registryId=account, repositoryNames=[name])
    except ecr.exceptions.RepositoryNotFoundException:
        print(
            f"[build_and_push.sh] creating ECR repository {name} in {region} "
            f"(scan on push, {mutability.lower()} tags)",
            file=sys.stderr,
        )
        ecr.create_repository(
            registryId=account,
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": True},
            imageTagMutability=mutability,
            encryptionConfiguration=encryption,
            **({"tags": tags} if tags else {}),
        )
    auth = ecr.get_authorization_token(registryIds=[account])["authorizationData"][0]
except botocore.exceptions.NoCredentialsError:
    fail("no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
except botocore.exceptions.ClientError as error:
    fail(f"AWS call failed: {error}")
except botocore.exceptions.BotoCoreError as error:
    fail(f"AWS call failed: {error}")

user, password = base64.b64decode(auth["authorizationToken"]).decode().split(":", 1)
registry = f"{account}.dkr.ecr.{region}.amazonaws.com"
if region.startswith("cn-"):
    registry += ".cn"
print(f"{registry}\t{user}\t{password}")
PY
)" || exit 1
    IFS=$'\t' read -r ecr_registry ecr_user ecr_password <<<"$output"
}

if ((push)) && [[ -z "$registry" ]]; then
    prepare_ecr
fi

# ---- build -----------------------------------------------------------------------------------
# Serves the wheelhouse on 127.0.0.1 for the build (the Dockerfile's WHEELHOUSE_URL) and sets
# wheelhouse_url. The port is the first free one from WHEELHOUSE_PORT: the URL is part of the
# dependency layer's cache key, so a steady port keeps that layer cached from build to build.
serve_wheelhouse() {
    local dir="$1" python port_file
    python="$(command -v python3 || true)"
    [[ -n "$python" ]] || python="$repo_root/.venv/bin/python"
    [[ -x "$python" ]] || die "serving the wheelhouse needs python3"
    port_file="$(mktemp)"
    "$python" - "$dir" "${WHEELHOUSE_PORT:-39517}" "$$" >"$port_file" <<'PY' &
import functools
import http.server
import os
import sys
import threading
import time


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def stop_with(server, script_pid):
    """Shut down once the script is gone, even when it was killed before its EXIT trap ran:
    a server left behind would hold the port, and the next build would miss the layer cache."""
    while True:
        try:
            os.kill(script_pid, 0)
        except ProcessLookupError:
            server.shutdown()
            return
        time.sleep(1)


directory, first, script_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for port in range(first, first + 100):
    try:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", port), functools.partial(QuietHandler, directory=directory)
        )
    except OSError:
        continue
    print(port, flush=True)
    threading.Thread(target=stop_with, args=(server, script_pid), daemon=True).start()
    server.serve_forever()
    sys.exit(0)
sys.exit(f"no free port in {first}..{first + 99}")
PY
    wheelhouse_server=$!
    trap 'kill "$wheelhouse_server" 2>/dev/null || true' EXIT
    local deadline=$((SECONDS + 30))
    until [[ -s "$port_file" ]]; do
        kill -0 "$wheelhouse_server" 2>/dev/null || die "could not serve $dir on 127.0.0.1"
        ((SECONDS < deadline)) || die "the wheelhouse server did not start within 30 s"
        sleep 0.1
    done
    port="$(cat "$port_file")"
    rm -f "$port_file"
    wheelhouse_url="http://127.0.0.1:$port"
}

if ((build)); then
    wheelhouse="${wheelhouse%/}"
    [[ "$wheelhouse" = /* ]] || wheelhouse="$repo_root/$wheelhouse"
    network_args=()
    wheelhouse_url=""
    if compgen -G "$wheelhouse/*.whl" >/dev/null; then
        [[ -f "$wheelhouse/requirements.lock" ]] \
            || die "$wheelhouse has no requirements.lock: rerun scripts/build_wheelhouse.sh"
        serve_wheelhouse "$wheelhouse"
        # The build's RUN steps share the host's network so they reach the server on 127.0.0.1.
        network_args=(--network host)
        log "serving the wheels of $wheelhouse at $wheelhouse_url for the build"
    else
        log "no wheels in $wheelhouse: the build will install from the package index"
    fi
    log "building $local_ref from $base_image"
    started=$SECONDS
    # Legacy builder: BuildKit/buildx is not available everywhere (e.g. Debian's docker.io 20.10).
    # --force-rm: a failed step leaves no stopped container behind.
    DOCKER_BUILDKIT=0 "$docker" build \
        --platform linux/amd64 \
        --force-rm \
        ${network_args[@]+"${network_args[@]}"} \
        --file "$repo_root/container/Dockerfile" \
        --build-arg "BASE_IMAGE=$base_image" \
        --build-arg "WHEELHOUSE_URL=$wheelhouse_url" \
        ${target:+--target "$target"} \
        ${build_args[@]+"${build_args[@]}"} \
        ${cache_args[@]+"${cache_args[@]}"} \
        --tag "$local_ref" \
        "$repo_root" >&2
    log "built $local_ref in $((SECONDS - started))s"
fi

if ((!push)); then
    echo "$local_ref"
    exit 0
fi

# ---- push to an explicit registry -------------------------------------------------------------
# Pushes $1 (REPOSITORY:TAG) and prints it by digest, from docker push's own "digest: sha256:..."
# line (the registry's manifest digest), else from the engine's RepoDigests.
push_and_print_digest() {
    local ref="$1" repository="${1%:*}" output digest
    log "pushing $ref"
    output="$("$docker" push "$ref" | tee /dev/stderr)" || return 1
    digest="$(grep -oE 'digest: sha256:[0-9a-f]{64}' <<<"$output" | tail -n 1 | cut -d' ' -f2)"
    if [[ -z "$digest" ]]; then
        digest="$("$docker" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" \
            | grep -F "$repository@" | head -n 1 | cut -d@ -f2)"
    fi
    [[ -n "$digest" ]] || die "pushed $ref, but neither docker push nor the engine told its digest"
    log "pushed $ref as $repository@$digest"
    echo "$repository@$digest"
}

if [[ -n "$registry" ]]; then
    remote_ref="${registry%/}/$name:$tag"
    "$docker" tag "$local_ref" "$remote_ref"
    push_and_print_digest "$remote_ref" || die "push to $registry failed (logged in? reachable?)"
    exit 0
fi

# ---- push to Amazon ECR -----------------------------------------------------------------------
log "logging in to $ecr_registry"
printf '%s' "$ecr_password" | "$docker" login --username "$ecr_user" --password-stdin \
    "https://$ecr_registry" >&2 || die "docker login to $ecr_registry failed"
# A tag names one image for good in an immutable repository: unless one was asked for, each push
# gets its own.
remote_tag="$tag"
((tag_given)) || remote_tag="build-$(date -u +%Y%m%d-%H%M%S)"
remote_ref="$ecr_registry/$name:$remote_tag"
"$docker" tag "$local_ref" "$remote_ref"
push_and_print_digest "$remote_ref" || die "push to $ecr_registry failed"
