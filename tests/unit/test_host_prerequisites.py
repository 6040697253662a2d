"""The Debian mirror of scripts/docker_host_prerequisites.sh: DEBIAN_MIRROR, else the host's apt sources.

Runs the script with --print-mirror, which stops before anything is installed or started, against
apt source folders under tmp_path (APT_SOURCES_DIR); needs bash and awk, no root, network or docker.
The hosts are example.com names (RFC 2606), standing in for a corporate mirror.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "docker_host_prerequisites.sh"
MIRROR = "http://apt.example.com/debian"


def print_mirror(apt_dir: Path, debian_mirror: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DEBIAN_MIRROR"}
    env["APT_SOURCES_DIR"] = str(apt_dir)
    if debian_mirror is not None:
        env["DEBIAN_MIRROR"] = debian_mirror
    return subprocess.run(
        ["bash", str(SCRIPT), "--print-mirror"], env=env, capture_output=True, text=True, timeout=30
    )


def mirror_of(apt_dir: Path) -> str:
    result = print_mirror(apt_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def apt_dir(tmp_path) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def write(path: Path, text: str) -> None:
    path.write_text(text.lstrip("\n"))


def test_one_line_format_with_options(apt_dir):
    write(
        apt_dir / "sources.list",
        f"""
# deb http://old.example.com/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/corp.gpg] {MIRROR}/ bookworm main contrib
deb http://second.example.com/debian bookworm main
""",
    )
    assert mirror_of(apt_dir) == MIRROR


def test_options_spread_over_words(apt_dir):
    write(apt_dir / "sources.list.d" / "corp.list", f"deb [ arch=amd64 trusted=yes ] {MIRROR} stable main\n")
    assert mirror_of(apt_dir) == MIRROR


def test_deb822_format(apt_dir):
    write(
        apt_dir / "sources.list.d" / "debian.sources",
        f"""
Types: deb deb-src
# a comment inside the stanza
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main non-free-firmware
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD3K87ZM18gzyQZJD+w
 -----END PGP PUBLIC KEY BLOCK-----
""",
    )
    assert mirror_of(apt_dir) == MIRROR


def test_deb822_field_names_are_case_insensitive_and_crlf_is_read(apt_dir):
    text = f"types: deb\r\nuris: {MIRROR}\r\nsuites: trixie\r\ncomponents: main\r\n"
    (apt_dir / "sources.list.d" / "debian.sources").write_text(text, newline="")
    assert mirror_of(apt_dir) == MIRROR


def test_security_only_entries_are_skipped(apt_dir):
    write(
        apt_dir / "sources.list",
        f"""
deb http://apt.example.com/debian-security bookworm-security main
deb http://security.example.com/debian bookworm-security main
deb {MIRROR} bookworm main
""",
    )
    assert mirror_of(apt_dir) == MIRROR


def test_security_stanza_is_skipped_in_deb822(apt_dir):
    write(
        apt_dir / "sources.list.d" / "debian.sources",
        f"""
Types: deb
URIs: http://apt.example.com/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: {MIRROR}
Suites: bookworm
Components: main
""",
    )
    assert mirror_of(apt_dir) == MIRROR


def test_deb_src_is_skipped(apt_dir):
    write(apt_dir / "sources.list", "deb-src http://src.example.com/debian bookworm main\n")
    write(
        apt_dir / "sources.list.d" / "a-src.sources",
        "Types: deb-src\nURIs: http://src.example.com/debian\nSuites: bookworm\nComponents: main\n",
    )
    write(apt_dir / "sources.list.d" / "b.list", f"deb {MIRROR} bookworm main\n")
    assert mirror_of(apt_dir) == MIRROR


def test_local_methods_disabled_stanzas_and_third_party_repositories_are_skipped(apt_dir):
    write(
        apt_dir / "sources.list",
        """
deb cdrom:[Debian GNU/Linux 12 _Bookworm_]/ bookworm main
deb file:/srv/debian bookworm main
deb https://tools.example.com/apt cloud-sdk-bookworm main
deb https://containers.example.com/linux/debian bookworm stable
deb https://flat.example.com/repo ./
""",
    )
    write(
        apt_dir / "sources.list.d" / "0-off.sources",
        "Types: deb\nURIs: http://off.example.com/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n",
    )
    write(apt_dir / "sources.list.d" / "1.list", f"deb {MIRROR} bookworm-backports main\n")
    assert mirror_of(apt_dir) == MIRROR


def test_sources_list_comes_first_then_the_folder_in_order(apt_dir):
    write(apt_dir / "sources.list", "# only comments here\n")
    write(apt_dir / "sources.list.d" / "b.list", "deb http://b.example.com/debian bookworm main\n")
    stanza = f"Types: deb\nURIs: {MIRROR}\nSuites: sid\nComponents: main\n"
    write(apt_dir / "sources.list.d" / "a.sources", stanza)
    write(apt_dir / "sources.list.d" / "0.list.disabled", "deb http://c.example.com/debian bookworm main\n")
    assert mirror_of(apt_dir) == MIRROR

    write(apt_dir / "sources.list", "deb http://first.example.com/debian stable main\n")
    assert mirror_of(apt_dir) == "http://first.example.com/debian"


def test_debian_mirror_overrides_the_apt_sources(apt_dir):
    write(apt_dir / "sources.list", f"deb {MIRROR} bookworm main\n")
    result = print_mirror(apt_dir, debian_mirror="https://override.example.com/debian")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "https://override.example.com/debian\n"

    empty = apt_dir / "empty"
    empty.mkdir()
    assert print_mirror(empty, debian_mirror="http://x.example.com/d").stdout == "http://x.example.com/d\n"


SECURITY_ONLY = "deb http://apt.example.com/debian-security bookworm-security main\n"


@pytest.mark.parametrize("content", [None, SECURITY_ONLY], ids=["empty", "security-only"])
def test_nothing_found_says_to_set_debian_mirror(apt_dir, content):
    if content is not None:
        write(apt_dir / "sources.list", content)
    result = print_mirror(apt_dir)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "set DEBIAN_MIRROR" in result.stderr
    assert str(apt_dir) in result.stderr


def test_missing_apt_folder_says_to_set_debian_mirror(tmp_path):
    result = print_mirror(tmp_path / "absent")
    assert result.returncode != 0
    assert "set DEBIAN_MIRROR" in result.stderr
