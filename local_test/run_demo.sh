#!/usr/bin/env bash
# The main job end to end in Docker: demo data -> train in the container -> serve it -> classify
# a few test images through /invocations -> stop the server. `make demo` runs this after `make image`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [IMAGE]

Runs the digits demo with IMAGE (default: \$IMAGE or $DEFAULT_IMAGE) in TEST_DIR
(default local_test/test_dir), serving on 127.0.0.1:SERVE_PORT (default 8080).
PYTHON (default .venv/bin/python) writes the demo data; it needs scikit-learn (make setup).
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; -*) usage >&2; die "unknown option: $1" ;; esac
export IMAGE="${1:-${IMAGE:-$DEFAULT_IMAGE}}"
repo_root="$(dirname "$local_test_dir")"
python="${PYTHON:-$repo_root/.venv/bin/python}"

data="$TEST_DIR/input/data"
if [[ ! -d "$data/train" ]]; then
    log "writing the digits demo data to $data"
    PYTHONPATH="$repo_root/container:$repo_root" "$python" -m tools.demo_data "$data"
fi

"$local_test_dir/train_local.sh" "$IMAGE"

export SERVE_CONTAINER_NAME="${SERVE_CONTAINER_NAME:-sagemaker-local-demo-$$}"
"$local_test_dir/serve_local.sh" --detach "$IMAGE" >/dev/null
trap '"$local_test_dir/serve_local.sh" --stop || true' EXIT

# No `| head` under pipefail: it would kill sort with SIGPIPE.
mapfile -t test_images < <(find "$data/test" -name '*.png' | sort)
((${#test_images[@]})) || die "no test images in $data/test"
first="${test_images[0]}"
log "raw answer for $first:"
"$local_test_dir/predict.sh" "$first"
log "classifying test images through /invocations:"
"$python" "$local_test_dir/predict_folder.py" "$data/test" --per-class 3 \
    --url "http://127.0.0.1:$SERVE_PORT"
