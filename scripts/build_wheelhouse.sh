#!/usr/bin/env bash
# Fetch every wheel the image needs into container/wheelhouse/ (git-ignored), so that the image
# builds with `uv pip install --no-index` and no network inside `docker build`. Air-gapped users run
# this on a connected machine and carry the folder over.
#
# The wheels are exactly those of container/requirements.lock and of the installer that the build
# uses (container/requirements-build.lock), hash-checked on download. The folder gets its own copy
# of the image's lock, wheelhouse/requirements.lock, which the image installs from: it adds, for
# packages built here from a hashed sdist, the hash of the wheel built.
#
# Skips all work when the wheelhouse already matches the lock (a stamp holds its hash).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo_root/scripts/common.sh"

usage() {
    cat <<EOF
Usage: $(basename "$0") [-r LOCK] [-o WHEELHOUSE_DIR] [--force] [-h]

Downloads the locked runtime requirements, and uv (container/requirements-build.lock, which the
image build installs with), as wheels for Linux x86_64 / CPython 3.11.
Packages published only as source (sagemaker-training has a C extension) are built into wheels;
that needs a Linux x86_64 host with Python 3.11 and a C compiler (the image base is Debian 12,
so build on Debian 12 or older glibc).

  -r FILE      lock file, every package pinned with hashes (default: container/requirements.lock)
  -o DIR       output folder (default: container/wheelhouse)
  --force      rebuild even when the wheelhouse is up to date
  -h, --help   show this help

Environment:
  PYTHON           interpreter that runs pip (default: python3, else .venv-tools or .venv);
                   must be CPython 3.11
  TORCH_INDEX_URL  extra index for another torch variant, e.g. PyTorch's CPU-only index;
                   its hashes differ, so it needs a lock compiled against that index (-r)
  PIP_* variables  are honoured as usual (index URL, find-links, certificates)
EOF
}


requirements="$repo_root/container/requirements.lock"
build_requirements="$repo_root/container/requirements-build.lock"
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
for lock in "$requirements" "$build_requirements"; do
    [[ -r "$lock" ]] || die "lock file not found: $lock (make lock writes it)"
done

# Any CPython 3.11 with pip will do: when python3 has no pip module, one of the repository's
# venvs (`make test` makes .venv-tools before the image build starts).
python="${PYTHON:-python3}"
if [[ -z "${PYTHON:-}" ]] && ! python3 -m pip --version >/dev/null 2>&1; then
    for venv in .venv-tools .venv; do
        if "$repo_root/$venv/bin/python" -m pip --version >/dev/null 2>&1; then
            python="$repo_root/$venv/bin/python"
            break
        fi
    done
fi
"$python" -m pip --version >/dev/null 2>&1 \
    || die "$python has no pip: apt-get install python3-pip, or set PYTHON to one that has"
torch_index="${TORCH_INDEX_URL:-}"
stamp="$out/.requirements.sha256"
want="$( { cat "$requirements" "$build_requirements"; echo "torch_index=$torch_index"; } | sha256sum | cut -d' ' -f1)"

# One run at a time per folder (`make -j image image-serve`, two test workers building both images):
# a second run waits, then finds the stamp.
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if ((!force)) && [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "up to date: $out"
    exit 0
fi

# The wheels must match the image: Linux x86_64, CPython 3.11.
tag="$("$python" -c 'import platform, sys; print(f"{sys.implementation.name}{sys.version_info.major}{sys.version_info.minor}-{platform.system()}-{platform.machine()}")')"
[[ "$tag" == "cpython311-Linux-x86_64" ]] \
    || die "this host gives '$tag'; run on Linux x86_64 with CPython 3.11 (or set PYTHON)"

rm -f "$stamp"
extra=()
[[ -n "$torch_index" ]] && extra+=(--extra-index-url "$torch_index")
log "collecting wheels for $(cat "$requirements" "$build_requirements" | grep -cE '^[A-Za-z0-9]') locked packages into $out"
# `pip wheel` copies the published wheels and builds source-only packages (sagemaker-training)
# into wheels, checking every download against the lock's hashes; the lock is complete, so no
# dependency resolution (--no-deps). pip's wheel cache reuses the wheel `make setup` built.
"$python" -m pip wheel --quiet --require-hashes --no-deps ${extra[@]+"${extra[@]}"} \
    -r "$requirements" -r "$build_requirements" -w "$out"

# Drop wheels of older locks, so the folder (and the build context) does not grow forever, and
# write the image's copy of the lock: a wheel built here from an sdist has a hash of its own,
# which is added next to the sdist's (the sdist was checked against the lock when downloaded).
"$python" - "$requirements" "$build_requirements" "$out" <<'PY'
import hashlib, pathlib, re, sys

lock, build_lock, out = (pathlib.Path(arg) for arg in sys.argv[1:4])
text = lock.read_text()


def norm(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def parse(lock_text):
    """name -> (version, hashes, offset just after the entry's last hash)"""
    pattern = r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)((?: \\\n +--hash=sha256:[0-9a-f]+)+)"
    return {
        norm(m[1]): (m[2], set(re.findall(r"sha256:([0-9a-f]+)", m[3])), m.end())
        for m in re.finditer(pattern, lock_text, re.M)
    }


image_entries = parse(text)
# The installer's wheels are published ones: only the image's lock gets hashes added.
entries = {**parse(build_lock.read_text()), **image_entries}
files = {}  # name -> [(wheel, sha256)], oldest first
for whl in sorted(out.glob("*.whl"), key=lambda path: path.stat().st_mtime):
    name, version = whl.name.split("-")[:2]
    entry = entries.get(norm(name))
    if entry is None or version != entry[0]:
        print(f"[build_wheelhouse.sh] removing stale {whl.name}", file=sys.stderr)
        whl.unlink()
    else:
        files.setdefault(norm(name), []).append((whl, hashlib.sha256(whl.read_bytes()).hexdigest()))
wheels = {}
for name, found in files.items():
    # Wheels with a locked hash; none means built here from the sdist: keep the newest build.
    keep = [f for f in found if f[1] in entries[name][1]][:1] or found[-1:]
    for whl, _ in set(found) - set(keep):
        print(f"[build_wheelhouse.sh] removing unlocked {whl.name}", file=sys.stderr)
        whl.unlink()
    wheels[name] = keep[0][1]
missing = sorted(set(entries) - set(wheels))
if missing:
    sys.exit(f"[build_wheelhouse.sh] ERROR: no wheel for {', '.join(missing)}")
built = [
    (image_entries[n][2], h) for n, h in wheels.items() if n in image_entries and h not in image_entries[n][1]
]
for offset, digest in sorted(built, reverse=True):
    text = f"{text[:offset]} \\\n    --hash=sha256:{digest}{text[offset:]}"
header = "# The image installs this copy of the lock; hashes of wheels built here from sdists added.\n"
(out / "requirements.lock").write_text(header + text)
PY

echo "$want" >"$stamp"
log "done: $(find "$out" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1)"
