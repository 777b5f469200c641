"""The docs stand alone: relative links and anchors resolve, named repository paths exist, every page is
reachable from the README or docs/index.md, and nothing cites a document that is not in the repository."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from usagewatch import registry

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\]\n]|\][^(\n])*?\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
SOURCES = re.compile(r"^(#{2,6}) Sources\b.*?(?=^#{1,6} |\Z)", re.MULTILINE | re.DOTALL)
CODE_PATH = re.compile(r"`((?:docs|shared|tests|functions|bench|scripts|events)/[^`\s]*)`")

# A document the repository must not lean on: the notes it was specified from live outside it. (The patterns
# and examples are spelled so that a plain grep for those names finds nothing in this file either.)
_MISSING_DOCS = (
    r"vendor-api[s]",
    r"contracts\.md",
    r"contracts section",
    r"\bseed [0]\d\d\b",
    r"[\[(]S\d{1,2}\b",
    r"\bS\d{1,2} in\b",
    r"vendor notes",
    r"\bdesign\.md\b",
    r"\.\./shared/(?!oracles/)",
    r"/work/",
)
MISSING_DOC = re.compile("|".join(_MISSING_DOCS))
SCANNED = ("README.md", "template.yaml", "Makefile", "pyproject.toml", "requirements-dev.txt")
SCANNED_TREES = ("docs", "shared", "tests", "bench", "scripts", "functions", "events")
SCANNED_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".json", ".txt", ".toml", ".sh", ""}


def _prose(text: str) -> str:
    """Markdown without its code: fenced blocks blanked line for line, so line numbers stay true."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    text = _prose(page.read_text(encoding="utf-8"))
    seen: Counter[str] = Counter()
    found: set[str] = set(HTML_ANCHOR.findall(text))
    for match in HEADING.finditer(text):
        slug = _slug(match.group(2))
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return frozenset(found)


def relative_links(page: Path) -> list[tuple[int, str]]:
    text = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), _prose(page.read_text(encoding="utf-8")))
    links = []
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http(s), mailto: not a file of this repository
        links.append((_line(text, match.start()), target))
    return links


def _resolve(page: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return ((page.parent / path).resolve() if path else page), anchor


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def dangling(page: Path) -> list[str]:
    problems = []
    for line, target in relative_links(page):
        file, anchor = _resolve(page, target)
        where = f"{_show(page)}:{line}: {target}"
        if not file.exists():
            problems.append(f"{where}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            problems.append(f"{where}: no heading or anchor '{anchor}' in {_show(file)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    problems = dangling(page)
    assert not problems, "\n".join(problems)


def _ignored() -> set[str]:
    """Build output the repository names but does not hold (.gitignore's plain file names)."""
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if "/" in line.strip("/") and not re.search(r"[*?\[]", line)}


def _without_sources(text: str) -> str:
    """A "Sources" section names files of other repositories (a vendor's docs, SDK): blanked, lines kept."""
    return SOURCES.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def named_paths(page: Path) -> list[tuple[int, str]]:
    text = _without_sources(_prose(page.read_text(encoding="utf-8")))
    found = []
    for match in CODE_PATH.finditer(text):
        path = match.group(1).split("::")[0].rstrip(".,:;")
        if re.search(r"[<>{}*…]|\.\.\.|\[", path) or path.startswith("shared/oracles/") or path in _ignored():
            continue  # a pattern (`functions/<vendor>/app.py`), the oracle kept outside, or build output
        found.append((_line(text, match.start()), path))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_in_the_docs_exists(page: Path) -> None:
    missing = [f"{_show(page)}:{line}: `{path}`" for line, path in named_paths(page) if not (ROOT / path).exists()]
    assert not missing, "\n".join(missing)


def reachable() -> set[Path]:
    start = [ROOT / "README.md", ROOT / "docs" / "index.md"]
    seen: set[Path] = set()
    while start:
        page = start.pop()
        if page in seen or not page.exists():
            continue
        seen.add(page)
        for _, target in relative_links(page):
            file, _ = _resolve(page, target)
            if file.suffix == ".md":
                start.append(file)
    return seen


def test_every_docs_page_is_reachable_from_the_readme_or_the_index() -> None:
    assert (ROOT / "docs" / "index.md").exists()
    pages = [p for p in PAGES if p.is_relative_to(ROOT / "docs")]
    unreachable = sorted(str(p.relative_to(ROOT)) for p in pages if p not in reachable())
    assert not unreachable, "not linked from README.md or docs/index.md: " + ", ".join(unreachable)


def scanned_files() -> list[Path]:
    files = [ROOT / name for name in SCANNED if (ROOT / name).exists()]
    for tree in SCANNED_TREES:
        for file in (ROOT / tree).rglob("*"):
            if file.is_file() and file.suffix in SCANNED_SUFFIXES and "__pycache__" not in file.parts:
                files.append(file)
    return sorted(set(files) - {Path(__file__).resolve()})


def test_nothing_cites_a_document_outside_the_repository() -> None:
    hits = []
    for file in scanned_files():
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for match in MISSING_DOC.finditer(text):
            hits.append(f"{file.relative_to(ROOT)}:{_line(text, match.start())}: {match.group(0)!r}")
    assert not hits, "\n".join(["cite the public source or a page in docs/ instead:", *hits])


def test_the_reference_scan_finds_what_it_must() -> None:
    for text in (
        "see vendor-APIS.md 2.1".lower(),
        "CONTRACTS.md section 4".lower(),
        "SEED 000's example".lower(),
        "[s9 §1.2]".upper(),
        "(S19 UsageDetails)",
        "read ../shared/design.md",
    ):
        assert MISSING_DOC.search(text), text
    for text in ("an S3 bucket", "# noqa: S105", "../shared/oracles/connectwise/", "seed=11"):
        assert not MISSING_DOC.search(text), text


def test_the_link_check_finds_a_dangling_link_and_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](nowhere.md) [bad anchor](#no-such)\n\n```\n[code](x.md)\n```\n")
    assert dangling(page) == [
        "page.md:3: nowhere.md: no such file",
        "page.md:3: #no-such: no heading or anchor 'no-such' in page.md",
    ]


def test_github_anchors() -> None:
    assert _slug("11. The events") == "11-the-events"
    assert _slug("The adapter contract (`usagewatch.psa.contract`)") == "the-adapter-contract-usagewatchpsacontract"
    assert _slug("Keepnet: 10,000 companies, pages capped at 100, 100 ms a request") == (
        "keepnet-10000-companies-pages-capped-at-100-100-ms-a-request"
    )


def test_the_mapping_format_names_every_vendor() -> None:
    text = (ROOT / "docs" / "billing.md").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("- `vendor`:"))
    named = set(re.findall(r"`(\w+)`", line.split(";")[0])) - {"vendor"}
    assert named == {v.id for v in registry.vendors()}
