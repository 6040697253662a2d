# Helpers shared by the shell scripts of this repository (sourced, not run).

# Progress and errors go to stderr, prefixed with the script's name; stdout stays for results.
log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# A Docker engine that answers, with a hint at the script that provides one.
require_engine() {
    command -v "${DOCKER:-docker}" >/dev/null \
        || die "docker not found; run scripts/docker_host_prerequisites.sh"
    "${DOCKER:-docker}" info >/dev/null 2>&1 \
        || die "the Docker engine does not answer; run scripts/docker_host_prerequisites.sh (as root)"
}
