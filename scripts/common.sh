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

# uv does not read pip's configuration: print pip's package sources (index-url, extra-index-url,
# find-links from pip.conf or PIP_* variables) as uv options, one per line, so `make lock` and
# `make setup` see the same packages as pip. uv tries the extra indexes before the default one,
# as pip's mirrors are local and fast; the wheels are identical, so the hashes agree.
uv_source_args() {
    "${PYTHON:-python3}" -m pip config list 2>/dev/null | "${PYTHON:-python3}" -c '
import re, sys
values = {}
for line in sys.stdin:
    m = re.match(r"^(\S*?)\.(index-url|extra-index-url|find-links)=(.*)$", line.strip())
    if m:
        # Environment variables (scope ":env:") win over files, as in pip.
        scope, key, value = m[1], m[2], m[3].strip("\x27\"")
        items = values.setdefault(key, [])
        for item in value.split():
            if item not in items:
                items.insert(0, item) if scope == ":env:" else items.append(item)
for key in ("index-url", "extra-index-url", "find-links"):
    for item in values.get(key, [])[: 1 if key == "index-url" else None]:
        print(f"--{key}")
        print(item)
'
}
