"""The README in two layers: README.md stays a first screen (at most 250 lines: what the
suite is, the two commands, the results in brief, the layout, where to read on) and the
rest lives in docs/. Every relative Markdown link in README.md, config/README.md,
results/pilots/README.md and docs/*.md resolves: its file exists inside the repository,
and an ``#anchor`` into a Markdown file is the GitHub slug of one of its headings.

Markdown only: these tests need neither torch nor the project's virtual environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(?:[-*+] +|\d+[.)] +)*\s*(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")
# [text](target) and ![alt](target), text possibly over several lines, optional "title"
INLINE_LINK = re.compile(r"!?\[([^\[\]]*)\]\(\s*<?([^()\s<>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")
LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Overrides conftest's fixture of this name, which imports torch: Markdown only here."""
    yield


def checked_pages(root: Path = REPO) -> list[Path]:
    """The Markdown files whose links are checked."""
    return [root / "README.md", root / "config" / "README.md",
            root / "results" / "pilots" / "README.md", *sorted((root / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links and HTML tags reduced to their text),
    lowercased, punctuation other than '-' and '_' removed, each space turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose(text: str, spans: bool = False) -> str:
    """``text`` with fenced code blocks blanked and (unless ``spans``) inline code spans
    reduced to ``code``, line for line (line numbers stay), so that code is never read as
    a link or a heading."""
    lines, fence = [], None
    for line in text.split("\n"):
        opener = FENCE.match(line)
        if fence is None and opener:
            fence = opener.group(1)
            lines.append("")
        elif fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence) \
                    and not line.strip().lstrip("`~"):
                fence = None
            lines.append("")
        else:
            lines.append(line if spans else CODE_SPAN.sub("code", line))
    return "\n".join(lines)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives ``page``: one per heading (a repeated slug gets -1, -2, ...)
    and every ``<a name=...>`` or ``id=...``."""
    text = page.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    found = set(HTML_ANCHOR.findall(text))
    for match in HEADING.finditer(prose(text, spans=True)):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every inline link, image and reference definition of ``page``."""
    text = prose(page.read_text(encoding="utf-8"))
    found = [(match.start(2), match.group(2)) for match in INLINE_LINK.finditer(text)]
    found += [(match.start(1), match.group(1)) for match in REFERENCE_DEF.finditer(text)]
    return [(text.count("\n", 0, start) + 1, target) for start, target in sorted(found)]


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    """One line per relative link of ``page`` that does not resolve, saying why."""
    broken = []
    for line, target in links(page):
        if not target or SCHEME.match(target):
            continue  # an empty target is caught by no renderer either; URLs are not ours
        path_part, _, anchor = target.partition("#")
        where = f"{page.relative_to(root)}:{line}: {target}"
        resolved = (page.parent / unquote(path_part) if path_part else page).resolve()
        if not resolved.is_relative_to(root.resolve()):
            broken.append(f"{where} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and resolved.suffix.lower() == ".md":
            if unquote(anchor) not in anchors(resolved):
                broken.append(f"{where} (no heading with this anchor in "
                              f"{resolved.relative_to(root.resolve())})")
        elif anchor and not (resolved.is_file() and LINE_ANCHOR.match(anchor)):
            broken.append(f"{where} (an anchor into a file that is not Markdown)")
    return broken


# ---- the checker checks: exact slugs, and a broken page it must catch ----

@pytest.mark.parametrize(("heading", "expected"), [
    ("Choices the paper leaves open (documented here, used by the code)",
     "choices-the-paper-leaves-open-documented-here-used-by-the-code"),
    ("The study (`study.yaml`)", "the-study-studyyaml"),
    ("Code benchmarks: our harness and the authors'",
     "code-benchmarks-our-harness-and-the-authors"),
    ("Bit-exact across Intel CPUs; `portable` across Intel and AMD",
     "bit-exact-across-intel-cpus-portable-across-intel-and-amd"),
    ("The model-scale sweep: 1x, 2x and 4x students under one teacher",
     "the-model-scale-sweep-1x-2x-and-4x-students-under-one-teacher"),
    ("snake_case and A -- B", "snake_case-and-a----b"),
    ("See [the study](docs/x.md) <em>now</em>", "see-the-study-now"),
])
def test_slug_is_githubs(heading, expected):
    assert slug(heading) == expected


def test_repeated_headings_and_code_are_anchored_as_github_does(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# A\n\n## A\n\n```bash\n# not a heading\n```\n\n  ```text\n"
                    "  # nor this\n  ```\n\n### `A`\n<a name=\"here\"></a>\n")
    assert anchors(page) == {"a", "a-1", "a-2", "here"}


def test_broken_links_are_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "fig.png").write_bytes(b"")
    (tmp_path / "tool.py").write_text("x = 1\n")
    (tmp_path / "docs" / "b.md").write_text("# Real heading\n\n## Second: part (two)\n")
    page = tmp_path / "docs" / "a.md"
    page.write_text(
        "# Local\n\n"
        "[ok](b.md#real-heading) [ok](b.md#second-part-two) [ok](#local) [ok](b.md)\n"
        "![ok](../fig.png) [ok](../tool.py#L3) [url](https://example.com/x.md#nope)\n"
        "[over two\nlines](b.md#real-heading)\n"
        "`[code](nope-in-code.md)`\n\n```md\n[fenced](nope-in-fence.md)\n```\n\n"
        "[missing](nope.md) [bad anchor](b.md#no-such-heading) [bad local](#nowhere)\n"
        "![missing figure](../nope.png) [escape](../../outside.md)\n"
        "[bad line](../tool.py#section)\n"
        "[ref]: b.md#also-missing\n")
    assert [msg.split(": ", 1)[1] for msg in broken_links(page, tmp_path)] == [
        "nope.md (no such file)",
        "b.md#no-such-heading (no heading with this anchor in docs/b.md)",
        "#nowhere (no heading with this anchor in docs/a.md)",
        "../nope.png (no such file)",
        "../../outside.md (outside the repository)",
        "../tool.py#section (an anchor into a file that is not Markdown)",
        "b.md#also-missing (no heading with this anchor in docs/b.md)",
    ]
    assert broken_links(page, tmp_path)[0].startswith("docs/a.md:13: ")


# ---- the repository's pages ----

@pytest.mark.parametrize("page", checked_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert page.exists(), f"{page.relative_to(REPO)} is gone: update checked_pages"
    assert links(page), f"{page.relative_to(REPO)} has no links: is the parser broken?"
    assert broken_links(page) == []


def test_readme_is_a_first_screen():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail to docs/")
    start = lines.index("## Set-up: two commands")
    assert start < 40, "the two commands belong on the README's first screen"
    block = "\n".join(lines[start:start + 10])
    assert "make run " in block and "make test " in block


def test_every_docs_page_is_indexed():
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    linked = {target.partition("#")[0] for _, target in links(REPO / "docs" / "README.md")}
    pages = {page.name for page in (REPO / "docs").glob("*.md")} - {"README.md"}
    assert pages, "docs/ has no pages"
    assert pages <= linked, f"docs/README.md does not link {sorted(pages - linked)}"
    assert "docs/README.md" in {t for _, t in links(REPO / "README.md")}, \
        "README.md does not link the docs index"
    assert index.startswith("# ")
