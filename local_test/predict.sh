#!/usr/bin/env bash
# Send image files to the local endpoint's /invocations (as InvokeEndpoint does) and print the
# JSON answers, one line per file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
    cat <<USAGE
Usage: $(basename "$0") IMAGE_FILE [IMAGE_FILE...]

POSTs each file to http://127.0.0.1:SERVE_PORT/invocations with a Content-Type from its extension
(.png image/png, .jpg/.jpeg image/jpeg, anything else application/x-image) and prints the answer.
Exits non-zero on the first file the server does not answer with 2xx.

Environment: SERVE_PORT (default 8080), ACCEPT (default application/json).
USAGE
}

(($#)) || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
command -v curl >/dev/null || die "curl not found (apt-get install curl)"

for file in "$@"; do
    [[ -f "$file" ]] || die "no such file: $file"
    case "${file,,}" in
        *.png) content_type=image/png ;;
        *.jpg|*.jpeg) content_type=image/jpeg ;;
        *) content_type=application/x-image ;;
    esac
    curl -sS --fail-with-body \
        -H "Content-Type: $content_type" -H "Accept: ${ACCEPT:-application/json}" \
        --data-binary "@$file" "http://127.0.0.1:$SERVE_PORT/invocations" \
        || die "request for $file failed"
    echo
done
