#!/bin/sh
# Creates /opt/venv and installs a lock into it, every hash checked (both Dockerfile stages).
#
#   install_venv.sh LOCK [--wheelhouse-lock] [--compiler] [--check MODULE ...]
#
# From the wheelhouse at $WHEELHOUSE_URL when it is set (with --wheelhouse-lock, the wheelhouse's
# own copy of the lock: the same pins plus the hashes of the wheels build_wheelhouse.sh built from
# sdists), else from the package index (and $TORCH_INDEX_URL). --compiler: for a source-only
# package with a C extension, the compiler packages the base lacks are installed for this step
# only and purged again. --check: modules that must import afterwards.
#
# uv installs the lock (requirements-build.lock, next to this script, pins it): it unpacks wheels
# in parallel, 40 s against pip's 100 s for the full image's lock on 2 cores. It lives in a venv
# under /tmp/build, which the Dockerfile removes in the same step; its cache is a temporary one.
set -eu
lock="$1"; shift
wheelhouse_lock=0; compiler_needed=0; checks=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheelhouse-lock) wheelhouse_lock=1 ;;
        --compiler) compiler_needed=1 ;;
        --check) shift; checks="$*"; break ;;
        *) echo "install_venv.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
# UV_SYSTEM_CERTS: uv trusts the base's certificate store (where a company's CA is installed).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1 UV_SYSTEM_CERTS=1
tools=/tmp/build/tools
build_lock="$(dirname "$0")/requirements-build.lock"
python3 -m venv /opt/venv
python3 -m venv "$tools"
compiler=""
# Sources as words (none holds a space): pip's for uv itself, uv's for the lock.
if [ -n "${WHEELHOUSE_URL:-}" ]; then
    # A proxy passed into the build (HTTP_PROXY) must not take the wheelhouse's local requests.
    export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
    if [ "$wheelhouse_lock" = 1 ]; then lock="$WHEELHOUSE_URL/requirements.lock"; fi
    pip_sources="--no-index --find-links $WHEELHOUSE_URL/"
    uv_sources="$pip_sources"
else
    echo "No WHEELHOUSE_URL: installing from the package index." >&2
    pip_sources=""
    # Like pip, take a package from whichever index has the best version.
    uv_sources="${TORCH_INDEX_URL:+--extra-index-url $TORCH_INDEX_URL --index-strategy unsafe-best-match}"
    if [ "$compiler_needed" = 1 ]; then
        for package in gcc libc6-dev python3-dev; do
            dpkg -s "$package" >/dev/null 2>&1 || compiler="$compiler $package"
        done
    fi
fi
if [ -n "$compiler" ]; then
    apt-get update
    apt-get install -y --no-install-recommends $compiler
fi
# The lock is complete, so no resolution (--no-deps: uv would fetch every wheel twice, once for its
# metadata); `uv pip check` then proves every declared dependency is installed. The sources are
# split into words but not globbed (set -f: an address may hold [ or ?).
set -f
# shellcheck disable=SC2086
"$tools/bin/pip" install -q $pip_sources --require-hashes -r "$build_lock"
# shellcheck disable=SC2086
"$tools/bin/uv" pip install -q --python /opt/venv/bin/python --compile-bytecode --no-deps \
    $uv_sources --require-hashes -r "$lock"
set +f
"$tools/bin/uv" pip check -q --python /opt/venv/bin/python
if [ -n "$compiler" ]; then
    apt-get purge -y --auto-remove $compiler
    rm -rf /var/lib/apt/lists/*
fi
rm -rf "$tools"
# One process imports them all (torch loads once); a failing import's traceback names its module.
if [ -n "$checks" ]; then
    # shellcheck disable=SC2086
    /opt/venv/bin/python -c 'import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]' $checks
fi
