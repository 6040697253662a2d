#!/usr/bin/env bash
# Make this host able to build and run the image: a Docker engine that answers, Compose (for
# SageMaker SDK local mode), and a Debian 12 + Python 3.11 base image. When the base image cannot
# be pulled (offline or air-gapped hosts) a local base is built by debootstrap and imported.
#
# Progress goes to stderr; stdout gets exactly one line: the base image reference to build FROM.
# Idempotent, and fast (a few `docker` calls) when everything is already there.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

readonly DEFAULT_BASE_IMAGE="python:3.11-slim-bookworm"
readonly DEFAULT_LOCAL_BASE="local/debian-python:3.11-bookworm"

usage() {
    cat <<EOF
Usage: $(basename "$0") [--base IMAGE] [--local-base IMAGE] [--with-registry] [--print-mirror] [-h]

Installs (Debian/Ubuntu, as root) what is missing of docker.io, docker-compose, debootstrap and curl,
starts the Docker engine if it is not running, and makes sure a base image exists.
Prints the base image to build FROM as the only line on stdout.

  --base IMAGE         base image to use when it exists or can be pulled
                       (default: \$BASE_IMAGE or $DEFAULT_BASE_IMAGE)
  --local-base IMAGE   tag of the debootstrap-built fallback base (default: $DEFAULT_LOCAL_BASE)
  --with-registry      also install Debian's docker-registry (used by the push tests)
  --print-mirror       print the Debian mirror debootstrap would use, and exit
  -h, --help           show this help

Environment: DEBIAN_MIRROR (Debian archive for debootstrap; default: the first Debian archive
             among this host's apt sources; on Ubuntu, set it), DOCKERD_LOG (default /var/log/dockerd.log),
             DOCKER_START_TIMEOUT (seconds, default 60), BASE_PULL_TIMEOUT (seconds, default 120).
EOF
}

# Print the first URI of the apt sources under the folder \$1 (sources.list, then
# sources.list.d/*.list and *.sources, one-line or deb822 format) that serves the Debian archive:
# a 'deb' entry (not deb-src) over http, https or ftp (no file:, cdrom:, mirror+ or tor+ methods)
# with component main and a Debian suite (a codename or alias, also with -updates or -backports);
# security-only entries (suite *-security, a path with debian-security) and third-party
# repositories (other suites or components) do not count. Prints nothing when none does.
readonly DEBIAN_SUITES="jessie stretch buster bullseye bookworm trixie forky duke sid experimental
    oldoldstable oldstable stable testing unstable"
apt_debian_mirror() {
    local dir="$1" files=() f
    [[ -f $dir/sources.list ]] && files+=("$dir/sources.list")
    for f in "$dir"/sources.list.d/*; do
        case "$f" in *.list | *.sources) [[ -f $f ]] && files+=("$f") ;; esac
    done
    ((${#files[@]})) || return 0
    awk -v suites="$DEBIAN_SUITES" '
        function has(list, word,   n, a, i) {
            n = split(list, a)
            for (i = 1; i <= n; i++) if (a[i] == word) return 1
            return 0
        }
        function debian_suite(s) {
            if (s ~ /-security$/) return 0
            sub(/-(updates|backports|backports-sloppy|proposed-updates)$/, "", s)
            return has(suites, s)
        }
        function consider(types, uris, suite_list, components,   n, a, i, ok) {
            if (!has(types, "deb") || !has(components, "main")) return
            n = split(suite_list, a)
            for (i = 1; i <= n; i++) if (debian_suite(a[i])) ok = 1
            if (!ok) return
            n = split(uris, a)
            for (i = 1; i <= n; i++) {
                if (a[i] !~ /^(https?|ftp):\/\// || a[i] ~ /debian-security/) continue
                sub(/\/+$/, "", a[i])
                print a[i]; found = 1; exit
            }
        }
        function one_line(line,   n, f, i, k, comps) {
            sub(/#.*/, "", line)
            n = split(line, f)
            if (n < 3) return
            k = 2
            if (f[2] ~ /^\[/) {  # options: [arch=amd64 signed-by=...], maybe spread over words
                while (k < n && f[k] !~ /\]$/) k++
                k++
            }
            for (i = k + 2; i <= n; i++) comps = comps " " f[i]
            consider(f[1], f[k], f[k + 1], comps)
        }
        function end_stanza() {
            if (("types" in field) && tolower(field["enabled"]) !~ /^[ \t]*no/)
                consider(field["types"], field["uris"], field["suites"], field["components"])
            split("", field); key = ""
        }
        FNR == 1 { end_stanza(); deb822 = (FILENAME ~ /\.sources$/) }
        { sub(/\r$/, "") }
        !deb822 { one_line($0); next }
        /^#/ { next }
        /^[ \t]*$/ { end_stanza(); next }
        /^[ \t]/ { if (key != "") field[key] = field[key] " " $0; next }
        index($0, ":") {
            key = tolower(substr($0, 1, index($0, ":") - 1))
            field[key] = substr($0, index($0, ":") + 1)
        }
        END { if (!found) end_stanza() }
    ' "${files[@]}"
}

# The Debian archive debootstrap uses: DEBIAN_MIRROR, else the one of this host's apt sources
# (APT_SOURCES_DIR, default /etc/apt, is there for the tests).
debian_mirror() {
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local dir="${APT_SOURCES_DIR:-/etc/apt}" found
    found="$(apt_debian_mirror "$dir")"
    [[ -n $found ]] || die "no Debian archive found among the apt sources in $dir (sources.list," \
        "sources.list.d/*.list, *.sources); set DEBIAN_MIRROR to the URL of a Debian mirror"
    echo "$found"
}


base_image="${BASE_IMAGE:-$DEFAULT_BASE_IMAGE}"
local_base="$DEFAULT_LOCAL_BASE"
with_registry=0
print_mirror=0
while (($#)); do
    case "$1" in
        --base) base_image="${2:?--base needs a value}"; shift 2 ;;
        --local-base) local_base="${2:?--local-base needs a value}"; shift 2 ;;
        --with-registry) with_registry=1; shift ;;
        --print-mirror) print_mirror=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

if ((print_mirror)); then
    debian_mirror
    exit 0
fi

dockerd_log="${DOCKERD_LOG:-/var/log/dockerd.log}"
start_timeout="${DOCKER_START_TIMEOUT:-60}"
pull_timeout="${BASE_PULL_TIMEOUT:-120}"

is_debian_root() { [[ -r /etc/debian_version && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; }
engine_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

# --- 1. packages -------------------------------------------------------------------------------
missing=()
# A docker client alone is not enough: the engine (dockerd) must exist unless one already answers.
if ! engine_answers && ! command -v dockerd >/dev/null; then missing+=(docker.io); fi
if ! command -v docker >/dev/null; then missing+=(docker.io); fi
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# local_test/serve_local.sh polls /ping with it.
command -v curl >/dev/null || missing+=(curl)
if ((with_registry)) && ! command -v docker-registry >/dev/null; then missing+=(docker-registry); fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')

if ((${#missing[@]})); then
    if is_debian_root; then
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a
        apt_log="$(mktemp)"
        { apt-get update && apt-get install -y "${missing[@]}"; } >"$apt_log" 2>&1 \
            || { tail -n 30 "$apt_log" >&2; rm -f "$apt_log"; die "apt-get install failed"; }
        rm -f "$apt_log"
    else
        log "missing: ${missing[*]}"
        log "on Debian/Ubuntu run as root: apt-get install -y ${missing[*]}"
        log "elsewhere install Docker Engine (or Docker Desktop) and Docker Compose; debootstrap is"
        log "only needed when the base image '$base_image' cannot be pulled."
        # Without an engine nothing else can work; the rest is optional on non-Debian hosts.
        engine_answers || die "no Docker engine answers 'docker info'"
    fi
fi

# --- 2. engine ---------------------------------------------------------------------------------
if ! engine_answers; then
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        log "starting the Docker engine with systemctl"
        systemctl start docker >&2 || true
    fi
    if ! engine_answers; then
        [[ $(id -u) -eq 0 ]] || die "the Docker engine is not running; start it (as root: dockerd &)"
        log "starting dockerd (log: $dockerd_log)"
        # setsid + nohup: the engine must outlive this script and the make process that called it.
        setsid nohup dockerd >"$dockerd_log" 2>&1 </dev/null &
    fi
    deadline=$((SECONDS + start_timeout))
    until engine_answers; do
        ((SECONDS < deadline)) || die "dockerd did not answer within ${start_timeout}s; see $dockerd_log"
        sleep 0.5
    done
    log "Docker engine is up ($(docker info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null))"
fi

# --- 3. base image -----------------------------------------------------------------------------
has_image() { docker image inspect "$1" >/dev/null 2>&1; }

if has_image "$base_image"; then
    echo "$base_image"; exit 0
fi
log "pulling $base_image (up to ${pull_timeout}s)"
if timeout "$pull_timeout" docker pull "$base_image" >&2 2>/dev/null; then
    echo "$base_image"; exit 0
fi
if has_image "$local_base"; then
    log "$base_image cannot be pulled; using the local base $local_base"
    echo "$local_base"; exit 0
fi

command -v debootstrap >/dev/null || die "cannot pull $base_image and debootstrap is not installed"
[[ $(id -u) -eq 0 ]] || die "cannot pull $base_image; building a local base by debootstrap needs root"
mirror="$(debian_mirror)" || exit 1
log "cannot pull $base_image; building $local_base by debootstrap from $mirror (about a minute)"
rootfs="$(mktemp -d /var/tmp/base-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
rm -f "$rootfs.log"
# Same trimming the official slim images do: no package caches or lists in the base layer.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$local_base" >/dev/null
log "built $local_base ($(docker image inspect --format '{{.Size}}' "$local_base" | numfmt --to=iec))"
echo "$local_base"
