"""Every relative link in README.md and docs/*.md points to a file that exists (and, for a link into a markdown
file with a #fragment, to one of its headings), so moving or renaming a doc cannot leave a dead link behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def links(path: Path) -> list[str]:
    """Markdown link targets outside code blocks and inline code."""
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text()))
    return LINK.findall(text)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", path.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path):
    dead = []
    for target in filter(is_relative, links(doc)):
        file, _, fragment = target.partition("#")
        resolved = (doc.parent / file).resolve() if file else doc
        if not resolved.exists():
            dead.append(target)
        elif fragment and resolved.suffix == ".md" and fragment.lower() not in anchors(resolved):
            dead.append(f"{target} (no such heading)")
    assert not dead, f"{doc.relative_to(REPO)} links to what is not there: {dead}"


def test_the_check_sees_links_and_headings():
    readme = REPO / "README.md"
    assert any(t.startswith("docs/") for t in links(readme))
    assert "the-input-gate" in anchors(REPO / "docs" / "user_guide.md")
