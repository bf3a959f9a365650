"""The rendered site (``quarto render --to html`` of a copy of the repo), parsed with BeautifulSoup.

One render per session (fixture ``rendered_site`` in ``tests/conftest.py``); every page listed
in ``_quarto.yml`` is checked, so a chapter added there is checked too. Without Quarto the
tests skip with that reason (``.ci/run`` installs one and makes a skip a failure).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from book_site import ROOT, book_files, chapter_notebooks, page_of, warnings_in

PAGES = [page_of(f) for f in book_files()]
CHAPTERS = chapter_notebooks()
XREF_KINDS = ("fig", "eq", "tbl", "sec")
#: ``@fig-x``, ``@eq-x``, ... as Pandoc reads a cross-reference (not inside a word or e-mail).
XREF = re.compile(r"(?<![\w@.])@((?:fig|eq|tbl|sec)-[\w-]*\w)")
#: Internal labels a reader cannot use (``eq-gs-jacobian``, ``@fig-x``) in a code comment.
LABEL_IN_CODE = re.compile(r"(?<![\w-])@?(?:fig|eq|tbl|sec)-[a-z0-9]")
PLACEHOLDERS = re.compile(r"OWNER/|example\.(com|org)|PLACEHOLDER|XXX", re.IGNORECASE)


def _source_text(source: str) -> str:
    """The prose of a page source: markdown cells and figure/table captions of a notebook,
    or a ``.qmd`` file; code blocks and inline code removed (a label there is not a ref)."""
    path = ROOT / source
    if source.endswith(".ipynb"):
        nb = nbformat.read(path, as_version=4)
        parts = []
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                parts.append(cell.source)
            elif cell.cell_type == "code":
                opts = [ln[3:] for ln in cell.source.splitlines() if ln.startswith("#| ")]
                parts.append("\n".join(o for o in opts if not o.startswith("label:")))
        text = "\n\n".join(parts)
    else:
        text = path.read_text(encoding="utf-8")
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)  # fenced blocks
    return re.sub(r"`[^`\n]*`", "", text)  # inline code


def _resolve(page: str, href: str) -> str | None:
    """Site path (``chapters/x.html``) that a relative ``href`` on ``page`` points at."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        return None
    if not parts.path:
        return page
    target = PurePosixPath(page).parent / unquote(parts.path)
    out: list[str] = []
    for part in target.parts:
        if part == "..":
            if out:
                out.pop()
        elif part != ".":
            out.append(part)
    return "/".join(out)


@pytest.fixture(scope="module")
def label_pages(rendered_site) -> dict[str, str]:
    """Every element id of the form ``fig-/eq-/tbl-/sec-...`` -> the page that holds it."""
    out: dict[str, str] = {}
    for page in PAGES:
        for el in rendered_site.soup(page).find_all(id=re.compile(rf"^({'|'.join(XREF_KINDS)})-")):
            out.setdefault(el["id"], page)
    return out


def test_render_log_has_no_warnings(rendered_site):
    if not rendered_site.log:
        pytest.skip("CONCRETE_SITE_DIR: a site rendered before, no render log")
    warns = warnings_in(rendered_site.log)
    assert not warns, "Quarto's render log has warnings:\n" + "\n".join(warns)


@pytest.mark.parametrize("page", PAGES)
def test_one_page_per_book_file(rendered_site, page):
    assert (rendered_site.site / page).is_file(), f"{page}: not rendered"
    if page.endswith(tuple(Path(c).with_suffix(".html").name for c in CHAPTERS)):
        soup = rendered_site.soup(page)
        assert soup.select(".cell-output, .cell-output-display"), f"{page}: no stored outputs"


@pytest.mark.parametrize("page", PAGES)
def test_no_unresolved_cross_reference(rendered_site, page):
    soup = rendered_site.soup(page)
    main = soup.select_one("main") or soup
    bad = [str(el)[:120] for el in main.select(".quarto-unresolved-ref")]
    text = main.get_text(" ")
    bad += re.findall(r"\?@[\w-]+", text)
    assert not bad, f"{page}: unresolved cross-references {bad}"


@pytest.mark.parametrize("source", book_files())
def test_every_cross_reference_became_a_link(rendered_site, label_pages, source):
    """Each ``@fig-/@eq-/@tbl-/@sec-`` written in the source is a link in the page (a line
    starting ``(@eq-x)`` is a Pandoc example-list marker instead, and the reference vanishes)."""
    page = page_of(source)
    written: dict[str, int] = {}
    for label in XREF.findall(_source_text(source)):
        written[label] = written.get(label, 0) + 1
    soup = rendered_site.soup(page)
    linked: dict[str, int] = {}
    for a in soup.select("main a.quarto-xref, main a[href*='#']"):
        href = a.get("href", "")
        target = _resolve(page, href)
        fragment = urlsplit(href).fragment
        for label in written:
            home = label_pages.get(label)
            if home is None:
                continue
            chapter_link = not fragment and label.startswith("sec-")
            if target == home and (fragment == label or chapter_link):
                linked[label] = linked.get(label, 0) + 1
    missing = {lab: n - linked.get(lab, 0) for lab, n in written.items() if linked.get(lab, 0) < n}
    unknown = sorted(lab for lab in written if lab not in label_pages)
    assert not unknown, f"{source}: references to labels that exist on no page: {unknown}"
    assert not missing, (
        f"{source}: cross-references written in the source that are not links in {page} "
        f"(label: how many are missing): {missing}"
    )


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_download_link_serves_the_notebook(rendered_site, chapter):
    page = page_of(chapter)
    links = rendered_site.soup(page).select("a.notebook-download")
    assert len(links) == 1, f"{page}: expected one 'Download this notebook' link, got {len(links)}"
    href = links[0].get("href", "")
    target = _resolve(page, href)
    assert target == chapter, (
        f"{page}: 'Download this notebook' points at {href!r} (= {target}), not at {chapter} "
        "(Quarto rewrites a link to the input file unless it has data-noresolveinput)"
    )
    file = rendered_site.site / target
    assert file.is_file(), f"{page}: {target} is not in the site"
    nb = nbformat.read(file, as_version=4)
    assert nb.cells, f"{target}: an empty notebook"


@pytest.mark.parametrize("page", PAGES)
def test_images_resolve_and_no_stderr_or_placeholder(rendered_site, page):
    soup = rendered_site.soup(page)
    for img in soup.find_all("img"):
        src = img.get("src", "")
        if src.startswith("data:"):
            continue
        target = _resolve(page, src)
        assert target is not None, f"{page}: <img> from outside the site: {src}"
        assert (rendered_site.site / target).is_file(), f"{page}: <img src={src!r}> has no file"
    stderr = soup.select(".cell-output-stderr")
    first = stderr[0].get_text()[:200] if stderr else ""
    assert not stderr, f"{page}: {len(stderr)} stderr outputs, first: {first}"
    urls = [el.get(a, "") for a in ("href", "src") for el in soup.find_all(attrs={a: True})]
    bad = [u for u in urls if PLACEHOLDERS.search(u)]
    assert not bad, f"{page}: placeholder URLs reach the page: {sorted(set(bad))}"


@pytest.mark.parametrize("page", PAGES)
def test_repository_links_only_when_configured(rendered_site, page):
    """"View source" / "Report an issue" appear only when the publisher set a repository
    (``BOOK_REPO_URL``, see ``_quarto.yml``); the test render sets none."""
    actions = rendered_site.soup(page).select(".toc-actions a, a.toc-action")
    assert not actions, f"{page}: repository links without a configured repository: " + str(
        [a.get("href") for a in actions]
    )


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_figure_is_labelled_and_captioned(rendered_site, chapter):
    """Each image a code cell outputs is a numbered figure with a caption (no stray plots)."""
    page = page_of(chapter)
    stray = []
    for img in rendered_site.soup(page).select(".cell-output-display img"):
        fig = img.find_parent(id=re.compile(r"^fig-"))
        caption = fig.find("figcaption") if fig is not None else None
        if fig is None or caption is None or not caption.get_text(strip=True):
            cell = img.find_parent(class_="cell")
            where = cell.get("id") if cell is not None and cell.get("id") else img.get("src")
            stray.append(where)
    assert not stray, f"{page}: figures without a label and caption: {stray}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_code_comments_show_no_internal_labels(rendered_site, chapter):
    page = page_of(chapter)
    bad = []
    for comment in rendered_site.soup(page).select("div.sourceCode span.co"):
        text = comment.get_text()
        if LABEL_IN_CODE.search(text):
            bad.append(text.strip())
    assert not bad, (
        f"{page}: code comments show internal labels (write 'Equation 2.3' or drop): {bad}"
    )


def test_preface_names_each_chapter_once(rendered_site):
    """The Preface's chapter list: a reference renders as "1 The Gumbel-Max trick", so an
    emphasised name right after it (or one made of the title's words) says the title twice."""
    page = page_of(book_files()[0])
    soup = rendered_site.soup(page)
    repeated = []
    for li in soup.select("main li"):
        link = li.find("a", class_="quarto-xref")
        if link is None:
            continue
        title_words = set(re.findall(r"[a-z][\w-]{3,}", link.get_text(" ").lower()))
        for em in li.find_all(["em", "strong"]):
            if em.find_parent("a") is not None:
                continue
            words = set(re.findall(r"[a-z][\w-]{3,}", em.get_text(" ").lower()))
            prev = em.previous_sibling
            beside_link = (
                isinstance(prev, str) and prev.strip() in {"", ",", ":", "-", "\u2013", "\u2014"}
                and prev.previous_sibling is link
            )
            if beside_link or (words and words <= title_words):
                repeated.append(li.get_text(" ", strip=True)[:80])
    assert not repeated, f"{page}: chapter titles written twice in the list: {repeated}"


def test_search_index_covers_every_page(rendered_site):
    entries = json.loads((rendered_site.site / "search.json").read_text(encoding="utf-8"))
    pages = {e["href"].split("#")[0] for e in entries}
    missing = [p for p in PAGES if p not in pages]
    assert not missing, f"search.json has no entry for {missing}"
    text = " ".join(e.get("text", "") for e in entries).lower()
    assert "straight-through" in text


def test_render_leaves_gitignore_alone(rendered_site):
    """Quarto appends ``/.quarto/`` to ``.gitignore`` unless the file lists it that way."""
    if not rendered_site.log:
        pytest.skip("CONCRETE_SITE_DIR: a site rendered before")
    after = (rendered_site.project / ".gitignore").read_text(encoding="utf-8")
    assert after == (ROOT / ".gitignore").read_text(encoding="utf-8"), (
        "quarto render changed .gitignore (make book would leave the clone dirty)"
    )
