# Shared by the local_test scripts (sourced, not run): defaults and helpers.
# IMAGE, TEST_DIR and SERVE_PORT can be set in the environment; they mirror what SageMaker uses.

local_test_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_IMAGE="sagemaker-image-classifier:latest"
TEST_DIR="$(realpath -m "${TEST_DIR:-$local_test_dir/test_dir}")"
SERVE_PORT="${SERVE_PORT:-8080}"

source "$local_test_dir/../scripts/common.sh"

require_image() {
    docker image inspect "$1" >/dev/null 2>&1 || die "no image $1; build it with: make image"
}
