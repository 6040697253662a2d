"""Every documentation link resolves: Markdown links in the pages, and docs/*.md named in code.

Error messages, --help texts, the Makefile and requirement files send readers to docs pages;
a page that was renamed or never written leaves them at a dead end, so these checks read the
repository's own text and list every reference that points nowhere.
"""

from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); the target has no spaces (or is in <...>).
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, mailto:, ...
# docs/<name>.md, not as part of a longer path or URL (".../other/docs/x.md"), with an optional
# #anchor and the pages listed after it ("docs/a.md, b.md and c.md").
DOCS_MENTION = re.compile(
    r"(?<![\w./-])docs/([\w.-]+\.md)(#[\w-]+)?((?:(?:,\s*|\s+and\s+|,\s*and\s+)[\w.-]+\.md\b)*)"
)
LISTED_PAGE = re.compile(r"[\w.-]+\.md")
# Lock files are generated and name no docs page.
SKIPPED_SUFFIXES = (".lock",)


def markdown_pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """Line number and text of each line outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags render as nothing
    text = text.strip().lower()
    kept = [
        char
        for char in text
        if char in " -_" or unicodedata.category(char)[0] in "LNM"  # letters, digits, marks
    ]
    return "".join(kept).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    """Every heading anchor of ``page``; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(result)


def link_targets(page: Path) -> list[tuple[int, str]]:
    """Line number and target of each Markdown link outside code."""
    targets = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        prose = INLINE_CODE.sub("", line)
        for pattern in (INLINE_LINK, REFERENCE_DEFINITION):
            targets.extend((number, match.group(1).strip("<>")) for match in pattern.finditer(prose))
    return targets


def broken_target(page: Path, target: str) -> str | None:
    """Why ``target`` (relative to ``page``) does not resolve, or None when it does."""
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    if not resolved.exists():
        shown = resolved.relative_to(REPO_ROOT) if resolved.is_relative_to(REPO_ROOT) else resolved
        return f"{shown} does not exist"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
        return f"no heading with anchor #{anchor} in {resolved.relative_to(REPO_ROOT)}"
    return None


def broken_markdown_links(pages: list[Path]) -> list[str]:
    problems = []
    for page in pages:
        for number, target in link_targets(page):
            if EXTERNAL.match(target):
                continue
            reason = broken_target(page, target)
            if reason:
                problems.append(f"{page.relative_to(REPO_ROOT)}:{number}: ({target}) {reason}")
    return problems


def tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout ({error}): cannot list the tracked files")
    paths = (REPO_ROOT / name for name in listed.decode().split("\0") if name)
    return [path for path in paths if path.is_file() and not path.name.endswith(SKIPPED_SUFFIXES)]


def broken_docs_mentions(files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        data = path.read_bytes()
        if b"\0" in data:  # binary
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            for match in DOCS_MENTION.finditer(line):
                # Only the first page of a list can carry an anchor.
                first = [(match.group(1), (match.group(2) or "").lstrip("#"))]
                listed = [(name, "") for name in LISTED_PAGE.findall(match.group(3))]
                for name, anchor in first + listed:
                    reason = _missing_docs_page(name, anchor)
                    if reason:
                        problems.append(f"{path.relative_to(REPO_ROOT)}:{number}: {reason}")
    return problems


def _missing_docs_page(name: str, anchor: str) -> str | None:
    page = REPO_ROOT / "docs" / name
    if not page.is_file():
        return f"docs/{name} does not exist"
    if anchor and anchor not in anchors(page.resolve()):
        return f"no heading with anchor #{anchor} in docs/{name}"
    return None


def test_markdown_links_in_readme_and_docs_resolve():
    problems = broken_markdown_links(markdown_pages())
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_docs_page_named_in_tracked_files_exists():
    # This file's own examples of broken references are not references.
    files = [path for path in tracked_text_files() if path.resolve() != Path(__file__).resolve()]
    problems = broken_docs_mentions(files)
    assert not problems, "references to missing docs pages:\n" + "\n".join(problems)


def test_the_checks_report_a_broken_link_and_a_missing_page(tmp_path, monkeypatch):
    """The checks themselves: a missing file, a missing anchor and a missing page are each reported."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real.md").write_text("# Real page\n\n## 6. The same steps: `--local`\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/real.md#6-the-same-steps---local) [gone](docs/gone.md) [bad](docs/real.md#nowhere)\n"
        "```\n[in code](docs/ignored.md)\n```\n[web](https://example.com/x.md) `[code](docs/no.md)`\n"
    )
    code = tmp_path / "tool.py"
    code.write_text(
        'HINT = "see docs/real.md and docs/missing.md"\nURL = "https://x.org/docs/other.md"\n'
        'MORE = "see docs/real.md#real-page, real.md and listed.md"\n'
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    anchors.cache_clear()
    try:
        links = broken_markdown_links([page])
        mentions = broken_docs_mentions([code])
    finally:
        anchors.cache_clear()
    assert [problem.split(": ", 1)[0] for problem in links] == ["README.md:1", "README.md:1"]
    assert "docs/gone.md does not exist" in links[0]
    assert "#nowhere" in links[1]
    assert mentions == [
        "tool.py:1: docs/missing.md does not exist",
        "tool.py:3: docs/listed.md does not exist",
    ]
