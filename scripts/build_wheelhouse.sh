#!/usr/bin/env bash
# Fetch every wheel the image needs into container/wheelhouse/ (git-ignored), so that the image
# builds with `pip install --no-index` and no network inside `docker build`. Air-gapped users run
# this on a connected machine and carry the folder over.
#
# Skips all work when the wheelhouse already matches the requirements (a stamp holds their hash).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo_root/scripts/common.sh"

usage() {
    cat <<EOF
Usage: $(basename "$0") [-r REQUIREMENTS] [-o WHEELHOUSE_DIR] [--force] [-h]

Downloads the pinned runtime requirements as wheels for Linux x86_64 / CPython 3.11.
Packages published only as source (sagemaker-training has a C extension) are built into wheels;
that needs a Linux x86_64 host with Python 3.11 and a C compiler (the image base is Debian 12,
so build on Debian 12 or older glibc).

  -r FILE      requirements file (default: container/requirements.txt)
  -o DIR       output folder (default: container/wheelhouse)
  --force      rebuild even when the wheelhouse is up to date
  -h, --help   show this help

Environment:
  PYTHON           interpreter that runs pip (default: python3, else .venv/bin/python);
                   must be CPython 3.11
  TORCH_INDEX_URL  extra index for another torch variant, e.g. https://download.pytorch.org/whl/cpu
                   (pass the same value to the image build as --build-arg TORCH_INDEX_URL)
  PIP_* variables  are honoured as usual (index URL, find-links, certificates)
EOF
}


requirements="$repo_root/container/requirements.txt"
out="$repo_root/container/wheelhouse"
force=0
while (($#)); do
    case "$1" in
        -r) requirements="${2:?-r needs a file}"; shift 2 ;;
        -o) out="${2:?-o needs a folder}"; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ -r "$requirements" ]] || die "requirements file not found: $requirements"

# Any CPython 3.11 with pip will do: the repository's .venv when python3 has no pip module.
python="${PYTHON:-python3}"
if [[ -z "${PYTHON:-}" ]] && ! python3 -m pip --version >/dev/null 2>&1 \
    && [[ -x "$repo_root/.venv/bin/python" ]]; then
    python="$repo_root/.venv/bin/python"
fi
"$python" -m pip --version >/dev/null 2>&1 \
    || die "$python has no pip: apt-get install python3-pip, or set PYTHON to one that has"
torch_index="${TORCH_INDEX_URL:-}"
stamp="$out/.requirements.sha256"
want="$( { cat "$requirements"; echo "torch_index=$torch_index"; } | sha256sum | cut -d' ' -f1)"

if ((!force)) && [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "up to date: $out"
    exit 0
fi

# The wheels must match the image: Linux x86_64, CPython 3.11.
tag="$("$python" -c 'import platform, sys; print(f"{sys.implementation.name}{sys.version_info.major}{sys.version_info.minor}-{platform.system()}-{platform.machine()}")')"
[[ "$tag" == "cpython311-Linux-x86_64" ]] \
    || die "this host gives '$tag'; run on Linux x86_64 with CPython 3.11 (or set PYTHON)"

mkdir -p "$out"
rm -f "$stamp"
extra=()
[[ -n "$torch_index" ]] && extra+=(--extra-index-url "$torch_index")
log "collecting wheels for $(grep -cvE '^\s*(#|$)' "$requirements") pinned requirements into $out"
# `pip wheel` copies published wheels and builds source-only packages into wheels, resolving the
# full dependency tree; --prefer-binary keeps it from building anything that has a wheel, and
# pip's wheel cache reuses the sagemaker-training wheel that `make setup` built.
"$python" -m pip wheel --quiet --prefer-binary ${extra[@]+"${extra[@]}"} \
    -r "$requirements" -w "$out"

# Drop wheels left from older pins so the folder (and the build context) does not grow forever.
"$python" - "$requirements" "$out" <<'PY'
import pathlib, re, sys

req, out = sys.argv[1], pathlib.Path(sys.argv[2])
pins = {}
for line in pathlib.Path(req).read_text().splitlines():
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
    if m:
        pins[re.sub(r"[-_.]+", "_", m[1]).lower()] = m[2]
for whl in out.glob("*.whl"):
    name, version = whl.name.split("-")[:2]
    pinned = pins.get(re.sub(r"[-_.]+", "_", name).lower())
    if pinned and version.split("+")[0] != pinned.split("+")[0]:
        print(f"[build_wheelhouse.sh] removing stale {whl.name}", file=sys.stderr)
        whl.unlink()
PY

echo "$want" >"$stamp"
log "done: $(find "$out" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1)"
