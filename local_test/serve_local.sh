#!/usr/bin/env bash
# Serve TEST_DIR/model locally exactly as a SageMaker endpoint does: `docker run IMAGE serve` with
# the model on /opt/ml/model (read-only) and the port published on 127.0.0.1 only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [--detach | --stop] [IMAGE]

Serves TEST_DIR/model with IMAGE (default: \$IMAGE or $DEFAULT_IMAGE) on 127.0.0.1:SERVE_PORT.
In the foreground by default (Ctrl-C stops it).

  --detach    run in the background, wait until /ping answers 200, print the container name
  --stop      stop the background server (drains requests in flight), then exit
  -h, --help  show this help

Environment: TEST_DIR (default local_test/test_dir), SERVE_PORT (default 8080), SERVE_CONTAINER_NAME
(default sagemaker-local-serve-SERVE_PORT), SERVE_START_TIMEOUT (seconds, default 180), and any
SAGEMAKER_* serving variable (passed on to the container).
USAGE
}

mode=foreground
image="${IMAGE:-$DEFAULT_IMAGE}"
while (($#)); do
    case "$1" in
        --detach) mode=detach; shift ;;
        --stop) mode=stop; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *) image="$1"; shift ;;
    esac
done
name="${SERVE_CONTAINER_NAME:-sagemaker-local-serve-$SERVE_PORT}"
require_engine

if [[ $mode == stop ]]; then
    # SageMaker allows 30 s after SIGTERM; the server drains within its graceful timeout.
    docker stop --time 30 "$name" >/dev/null || die "no running server $name"
    log "stopped $name"
    exit 0
fi

require_image "$image"
[[ -f "$TEST_DIR/model/model_config.json" || -f "$TEST_DIR/model/model.tar.gz" ]] \
    || die "no model (model_config.json or model.tar.gz) in $TEST_DIR/model; train one first: local_test/train_local.sh"

env_args=()
while IFS= read -r var; do env_args+=(--env "$var"); done < <(compgen -e | grep '^SAGEMAKER_' || true)
run_args=(
    --rm --name "$name"
    --volume "$TEST_DIR/model:/opt/ml/model:ro"
    --publish "127.0.0.1:$SERVE_PORT:8080"
    ${env_args[@]+"${env_args[@]}"}
)

if [[ $mode == foreground ]]; then
    log "serving $TEST_DIR/model on http://127.0.0.1:$SERVE_PORT (Ctrl-C stops)"
    exec docker run "${run_args[@]}" "$image" serve
fi

docker run --detach "${run_args[@]}" "$image" serve >/dev/null
deadline=$((SECONDS + ${SERVE_START_TIMEOUT:-180}))
until curl -fsS -o /dev/null "http://127.0.0.1:$SERVE_PORT/ping" 2>/dev/null; do
    if ! docker inspect "$name" >/dev/null 2>&1 || ((SECONDS >= deadline)); then
        docker logs --tail 50 "$name" >&2 2>/dev/null || true
        docker rm -f "$name" >/dev/null 2>&1 || true
        die "the server did not answer /ping on 127.0.0.1:$SERVE_PORT"
    fi
    sleep 0.5
done
log "serving on http://127.0.0.1:$SERVE_PORT; stop with: $0 --stop"
echo "$name"
