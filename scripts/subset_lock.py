"""Write the part of a uv lock file that some of its packages need: their pins and hashes, and
those of everything they depend on, as the lock's ``# via`` comments record it.

    python3 scripts/subset_lock.py container/requirements.lock container/requirements-serve.txt

prints container/requirements-serve.lock. A subset of the full lock, not a second resolution:
the serving image runs exactly the versions the full image runs. Standard library only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==")
_VIA_ONE = re.compile(r"^\s+# via (?!$)(.+)$")
_VIA_MORE = re.compile(r"^\s+#\s{3}(.+)$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, tuple[list[str], set[str]]]:
    """package -> (its lines, the packages it is there for)."""
    entries: dict[str, tuple[list[str], set[str]]] = {}
    current: str | None = None
    for line in text.splitlines():
        pin = _PIN.match(line)
        if pin:
            current = normalize(pin.group(1))
            entries[current] = ([line], set())
            continue
        if current is None or not line.startswith(" "):
            current = None
            continue
        entries[current][0].append(line)
        via = _VIA_ONE.match(line) or _VIA_MORE.match(line)
        if via and not via.group(1).startswith("-r "):
            entries[current][1].add(normalize(via.group(1).strip()))
    return entries


def roots_of(requirements: str) -> set[str]:
    names = set()
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(normalize(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]))
    return names


def subset(lock: str, requirements: str, source: str, roots_file: str) -> str:
    entries = parse_lock(lock)
    needed = roots_of(requirements)
    missing = sorted(needed - set(entries))
    if missing:
        raise SystemExit(f"not in the lock: {', '.join(missing)}")
    grew = True
    while grew:
        grew = False
        for name, (_, parents) in entries.items():
            if name not in needed and parents & needed:
                needed.add(name)
                grew = True
    header = [
        f"# The part of {source} that {roots_file} needs, written by",
        "# scripts/subset_lock.py (`make lock`): the same pins and hashes.",
    ]
    body = [line for name in sorted(needed) for line in entries[name][0] if not line.strip().startswith("#")]
    return "\n".join(header + body) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    lock, requirements = Path(argv[1]), Path(argv[2])
    for path in (lock, requirements):
        if not path.is_file():
            print(f"subset_lock.py: {path} does not exist", file=sys.stderr)
            return 2
    sys.stdout.write(
        subset(lock.read_text(), requirements.read_text(), lock.as_posix(), requirements.as_posix())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
