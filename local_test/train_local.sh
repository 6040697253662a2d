#!/usr/bin/env bash
# Run a training job locally exactly as SageMaker does: `docker run IMAGE train` with the job's
# tree (local_test/test_dir, laid out like /opt/ml) mounted on /opt/ml and the host name algo-1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [--resume] [IMAGE]

Trains with IMAGE (default: \$IMAGE or $DEFAULT_IMAGE) on TEST_DIR/input/data, using the
configuration in TEST_DIR/input/config. The model lands in TEST_DIR/model, reports in
TEST_DIR/output/data, checkpoints in TEST_DIR/checkpoints. Exits with the container's exit code.

  --resume    keep TEST_DIR/checkpoints so the job resumes from them (as a restarted spot job)
  -h, --help  show this help

Environment: TEST_DIR (default local_test/test_dir), TRAIN_CONTAINER_NAME, OMP_NUM_THREADS (passed
to the job: its threads per process, as a job's Environment on SageMaker).
Make the demo data first: .venv/bin/python -m tools.demo_data TEST_DIR/input/data
USAGE
}

resume=0
image="${IMAGE:-$DEFAULT_IMAGE}"
while (($#)); do
    case "$1" in
        --resume) resume=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *) image="$1"; shift ;;
    esac
done

require_engine
require_image "$image"
[[ -f "$TEST_DIR/input/config/hyperparameters.json" ]] \
    || die "no $TEST_DIR/input/config/hyperparameters.json"
[[ -d "$TEST_DIR/input/data/train" ]] \
    || die "no training data in $TEST_DIR/input/data/train; make it with:
    .venv/bin/python -m tools.demo_data $TEST_DIR/input/data"

# A new SageMaker job starts with empty model and output folders.
stale=("$TEST_DIR/model" "$TEST_DIR/output")
((resume)) || stale+=("$TEST_DIR/checkpoints")
rm -rf "${stale[@]}" || die "cannot clear ${stale[*]} (files written by the container as root?)"
mkdir -p "$TEST_DIR/model" "$TEST_DIR/output" "$TEST_DIR/checkpoints"

log "training with $image on $TEST_DIR"
# No network: a single-host job needs none, and this is SageMaker's network isolation.
env_args=()
[[ -n "${OMP_NUM_THREADS:-}" ]] && env_args=(--env "OMP_NUM_THREADS=$OMP_NUM_THREADS")
status=0
docker run --rm \
    --name "${TRAIN_CONTAINER_NAME:-sagemaker-local-train-$$}" \
    --hostname algo-1 \
    --network none \
    --volume "$TEST_DIR:/opt/ml" \
    ${env_args[@]+"${env_args[@]}"} \
    "$image" train || status=$?
if ((status)); then
    [[ -s "$TEST_DIR/output/failure" ]] && log "failure reason: $(head -c 1024 "$TEST_DIR/output/failure")"
    die "training failed (exit code $status)"
fi
log "model: $TEST_DIR/model; reports: $TEST_DIR/output/data"
