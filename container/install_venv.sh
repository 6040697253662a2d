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
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
python3 -m venv /opt/venv
if [ -n "${WHEELHOUSE_URL:-}" ]; then
    # A proxy passed into the build (HTTP_PROXY) must not take the wheelhouse's local requests.
    export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
    if [ "$wheelhouse_lock" = 1 ]; then lock="$WHEELHOUSE_URL/requirements.lock"; fi
    /opt/venv/bin/pip install --no-index --find-links "$WHEELHOUSE_URL/" --require-hashes -r "$lock"
else
    echo "No WHEELHOUSE_URL: installing from the package index." >&2
    compiler=""
    if [ "$compiler_needed" = 1 ]; then
        for package in gcc libc6-dev python3-dev; do
            dpkg -s "$package" >/dev/null 2>&1 || compiler="$compiler $package"
        done
    fi
    if [ -n "$compiler" ]; then
        apt-get update
        apt-get install -y --no-install-recommends $compiler
    fi
    /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} --require-hashes -r "$lock"
    if [ -n "$compiler" ]; then
        apt-get purge -y --auto-remove $compiler
        rm -rf /var/lib/apt/lists/*
    fi
fi
if [ -n "$checks" ]; then
    for module in $checks; do
        /opt/venv/bin/python -c "import $module"
    done
fi
