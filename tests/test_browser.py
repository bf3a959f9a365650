"""The rendered site in a real browser: headless Chromium (Debian's ``chromium``) via Playwright.

The site (fixture ``rendered_site``, one render per session) is served on 127.0.0.1. Every
request that leaves 127.0.0.1 is refused, except MathJax: the pages load MathJax 3 from a CDN
that CI cannot reach, and the tests serve a local npm copy of ``mathjax@3`` in its place
(Playwright request routing; fixture ``mathjax_dir``). So the pages are tested as a reader
without network would see them, apart from MathJax itself. Web fonts from the theme are
refused too; the browser falls back to its own fonts.

Checks, on every page listed in ``_quarto.yml``: math typesets (no ``mjx-merror``, no raw
``$...$``); at 1280 px no display equation, table, output block or figure is wider than the
text column, output blocks have no horizontal scrollbar, and figure text is at least 9 px; at
414 px no display equation is cut off. Then: the light/dark toggle, the search box, prev/next
links, and chapter 3's interactive Concrete explorer against the library's numbers.
"""

from __future__ import annotations

import json

import pytest
from book_site import MATHJAX_CDN, ROOT, book_files, page_of

PAGES = [page_of(f) for f in book_files()]
#: Smallest font size (pt) used in the book's figures (matplotlib's default is 10 pt; the
#: library's plots and diagrams use 9 pt for notes, legends and bar values).
FIGURE_MIN_FONT_PT = 9.0
#: Figure text must be at least this tall as displayed at 1280 px ("about 9 px").
FIGURE_MIN_TEXT_PX = 8.5
EXPLORER_GRID = ROOT / "tests" / "data" / "concrete_explorer_grid.json"
#: Pages with a known phone-width (414 px) defect that is not fixed yet, and what it is. The
#: test still runs on them, strictly: once a page is fixed the test XPASSes and fails, so the
#: entry must be removed. Everything else about these pages is tested as usual.
KNOWN_PHONE_DEFECTS: dict[str, str] = {}
#: Pages with printed lines still wider than the text column at 1280 px (strict, as above).
KNOWN_WIDE_OUTPUTS: dict[str, str] = {}
DESKTOP_PAGES = [
    pytest.param(p, marks=pytest.mark.xfail(reason=KNOWN_WIDE_OUTPUTS[p], strict=True))
    if p in KNOWN_WIDE_OUTPUTS
    else p
    for p in PAGES
]
PHONE_PAGES = [
    pytest.param(p, marks=pytest.mark.xfail(reason=KNOWN_PHONE_DEFECTS[p], strict=True))
    if p in KNOWN_PHONE_DEFECTS
    else p
    for p in PAGES
]


@pytest.fixture(scope="module")
def open_page(browser, site_server, mathjax_dir):
    """``open_page(page, width)``: a new browser page at ``page``, MathJax typeset."""
    opened = []
    blocked: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(MATHJAX_CDN):
            file = mathjax_dir / url[len(MATHJAX_CDN):].split("?")[0]
            return r.fulfill(path=str(file)) if file.is_file() else r.abort()
        if url.startswith(site_server):
            return r.continue_()
        blocked.append(url)
        return r.abort()

    cache: dict = {}

    def no_math(r):
        return r.abort() if r.request.url.startswith(MATHJAX_CDN) else route(r)

    def _open(page: str, width: int = 1280, fresh: bool = False, math: bool = True):
        # read-only checks share one loaded tab per (page, width); interactive ones get a new
        # tab, without MathJax when they do not look at math (faster)
        if not fresh and (page, width) in cache:
            return cache[page, width]
        context = browser.new_context(viewport={"width": width, "height": 900})
        tab = context.new_page()
        tab.route("**/*", route if math else no_math)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(site_server + page, wait_until="load")
        if math and tab.evaluate("() => !!document.querySelector('.math, script[src*=mathjax]')"):
            tab.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
            tab.evaluate("() => MathJax.startup.promise")
        tab.errors = errors
        opened.append(context)
        if not fresh:
            cache[page, width] = tab
        return tab

    _open.blocked = blocked
    yield _open
    for context in opened:
        context.close()


# --------------------------------------------------------------------------- math
@pytest.mark.parametrize("page", PAGES)
def test_math_typesets(open_page, page):
    tab = open_page(page)
    result = tab.evaluate(
        """() => {
        const errors = [...document.querySelectorAll('mjx-merror')].map(e => e.textContent);
        const untypeset = [...document.querySelectorAll('span.math')]
            .filter(s => !s.querySelector('mjx-container')).map(s => s.textContent.slice(0, 60));
        const walker = document.createTreeWalker(document.querySelector('main') || document.body,
                                                 NodeFilter.SHOW_TEXT);
        const raw = [];
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            if (n.parentElement.closest('pre, code, script, style, mjx-container, .math')) continue;
            const m = n.textContent.match(/\\$[^$\\s][^$]*\\$|\\\\\\(|\\\\\\[/);
            if (m) raw.push(m[0].slice(0, 60));
        }
        return {errors, untypeset, raw, count: document.querySelectorAll('mjx-container').length};
    }"""
    )
    assert not result["errors"], f"{page}: MathJax errors {result['errors']}"
    assert not result["untypeset"], f"{page}: math left untypeset {result['untypeset'][:5]}"
    assert not result["raw"], f"{page}: raw TeX in the text {result['raw'][:5]}"
    if page.startswith("chapters/"):
        assert result["count"] > 0, f"{page}: no typeset math at all"


# --------------------------------------------------------------------------- widths
WIDE_AT_1280 = """() => {
    const main = document.querySelector('main#quarto-document-content').getBoundingClientRect();
    const right = main.right + 1, out = [];
    const where = e => {
        const el = e.closest('[id]');
        return (el ? '#' + el.id : '') + ' ' + e.textContent.trim().slice(0, 50);
    };
    for (const e of document.querySelectorAll('main mjx-container[display="true"]')) {
        const r = e.getBoundingClientRect();
        if (r.right > right || e.scrollWidth > e.clientWidth + 1)
            out.push(`equation ${where(e)} (${Math.round(Math.max(r.right, r.left + e.scrollWidth) - main.left)} px)`);
    }
    for (const e of document.querySelectorAll('main table')) {
        const r = e.getBoundingClientRect();
        if (r.right > right) out.push(`table ${where(e)} (${Math.round(r.width)} px)`);
    }
    for (const e of document.querySelectorAll('main .cell-output pre, main .cell-output-stdout pre')) {
        const r = e.getBoundingClientRect();
        if (r.right > right || e.scrollWidth > e.clientWidth + 1)
            out.push(`output block ${where(e)} (${e.scrollWidth} px of ${e.clientWidth})`);
    }
    for (const e of document.querySelectorAll('main img, main svg.concrete-explorer')) {
        const r = e.getBoundingClientRect();
        if (r.right > right) out.push(`image ${where(e)} (${Math.round(r.width)} px)`);
    }
    return {column: Math.round(main.width), wide: out};
}"""


@pytest.mark.parametrize("page", DESKTOP_PAGES)
def test_nothing_wider_than_the_text_column_at_1280px(open_page, page):
    tab = open_page(page, 1280)
    result = tab.evaluate(WIDE_AT_1280)
    assert not result["wide"], (
        f"{page} at 1280 px: wider than the {result['column']} px text column "
        "(break/align the equation, print a narrower table):\n  " + "\n  ".join(result["wide"])
    )


@pytest.mark.parametrize("page", PHONE_PAGES)
def test_no_equation_cut_off_at_414px(open_page, page):
    """On a phone every display formula fits the column and is in view (its number may sit in
    the equation's own scroll box: styles/site.css), and no inline formula runs off the screen
    (MathJax does not break inline math: split a long one into several ``$...$``)."""
    tab = open_page(page, 414)
    cut = tab.evaluate(
        """() => {
        const vw = document.documentElement.clientWidth, out = [];
        const where = e => { const el = e.closest('[id]'); return el ? '#' + el.id : ''; };
        for (const e of document.querySelectorAll('main mjx-container[display="true"]')) {
            const box = e.getBoundingClientRect();
            const body = (e.querySelector('mjx-mtable > mjx-table') || e.querySelector('mjx-math'))
                .getBoundingClientRect();
            if (body.width > box.width + 1 || body.left < box.left - 1 || body.right > box.right + 1
                || box.right > vw + 1)
                out.push(`display ${where(e)} ${e.textContent.slice(0, 40)} ` +
                         `(formula ${Math.round(body.width)} px, column ${Math.round(box.width)} px)`);
        }
        for (const e of document.querySelectorAll('main mjx-container:not([display="true"])')) {
            const r = e.getBoundingClientRect();
            const scrolled = e.parentElement.closest('pre, .table-responsive, mjx-container');
            if (r.right > vw + 1 && !scrolled)
                out.push(`inline ${where(e)} ${e.textContent.slice(0, 40)} ` +
                         `(ends at ${Math.round(r.right)} px, screen ${vw} px)`);
        }
        return out;
    }"""
    )
    assert not cut, f"{page} at 414 px: formulas cut off:\n  " + "\n  ".join(cut)


@pytest.mark.parametrize("page", [p for p in PAGES if p.startswith("chapters/")])
def test_figure_text_readable_at_1280px(open_page, rendered_site, page):
    """A matplotlib PNG of W inches at d dpi shows 1 pt as (displayed px / natural px) * d/72
    px; the book's smallest figure font (9 pt) must show at about 9 px (8.5 px or more). With a
    678 px column that is a figure of at most 10 in (saved with bbox_inches="tight")."""
    from PIL import Image

    tab = open_page(page, 1280)
    shown = tab.evaluate(
        """() => [...document.querySelectorAll('main .cell-output-display img')].map(e => ({
            src: e.getAttribute('src'), natural: e.naturalWidth,
            width: e.getBoundingClientRect().width,
            id: (e.closest('[id^="fig-"]') || {}).id || ''}))"""
    )
    small = []
    for img in shown:
        file = (rendered_site.site / page).parent / img["src"]
        dpi = Image.open(file).info.get("dpi", (72.0, 72.0))[0] if file.suffix == ".png" else 72
        px_per_pt = img["width"] / img["natural"] * dpi / 72
        text_px = FIGURE_MIN_FONT_PT * px_per_pt
        if text_px < FIGURE_MIN_TEXT_PX - 0.05:
            small.append(
                f"{img['id'] or img['src']}: {FIGURE_MIN_FONT_PT:g} pt text shows at {text_px:.1f} px "
                f"({img['natural'] / dpi:.1f} in wide at {dpi:.0f} dpi, shown {img['width']:.0f} px; "
                f"at most {img['width'] * FIGURE_MIN_FONT_PT / (72 * FIGURE_MIN_TEXT_PX):.1f} in fits)"
            )
    assert not small, f"{page}: figure text too small at 1280 px:\n  " + "\n  ".join(small)


# --------------------------------------------------------------------------- navigation
def test_light_dark_toggle_switches_theme(open_page):
    tab = open_page(PAGES[0], fresh=True, math=False)
    before = tab.evaluate("() => [document.body.className, getComputedStyle(document.body).backgroundColor]")
    tab.click(".quarto-color-scheme-toggle")
    after = tab.evaluate("() => [document.body.className, getComputedStyle(document.body).backgroundColor]")
    assert ("quarto-dark" in after[0]) != ("quarto-dark" in before[0]), (before, after)
    assert after[1] != before[1], f"background colour unchanged: {before[1]}"
    tab.click(".quarto-color-scheme-toggle")
    back = tab.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert back == before[1]


def test_search_finds_straight_through(open_page):
    tab = open_page(PAGES[0], fresh=True, math=False)
    tab.click("#quarto-search .aa-DetachedSearchButton, #quarto-search button, #quarto-search")
    box = tab.locator("input.aa-Input").first
    box.fill("straight-through")
    tab.wait_for_selector(".aa-Item a, .aa-Item", timeout=15000)
    hits = tab.evaluate("() => [...document.querySelectorAll('.aa-Item a')].map(a => a.href)")
    chapters_hit = {h.split("127.0.0.1:")[1].split("/", 1)[1].split("#")[0] for h in hits}
    assert any("gumbel_softmax" in h for h in chapters_hit), f"search results: {sorted(chapters_hit)}"


def test_prev_next_walk_the_book_in_order(open_page, site_server):
    tab = open_page(PAGES[0], fresh=True, math=False)
    def here() -> str:
        path = tab.url[len(site_server):].split("#")[0]
        return path + "index.html" if path == "" or path.endswith("/") else path

    visited = [PAGES[0]]
    for _ in range(len(PAGES) + 2):
        nxt = tab.locator(".nav-page-next a.pagination-link")
        if nxt.count() == 0:
            break
        nxt.first.click()
        tab.wait_for_load_state("load")
        visited.append(here())
    assert visited == PAGES, f"next links walk {visited}, _quarto.yml lists {PAGES}"
    for expected in reversed(PAGES[:-1]):
        tab.locator(".nav-page-previous a.pagination-link").first.click()
        tab.wait_for_load_state("load")
        assert here() == expected


# --------------------------------------------------------------------------- the explorer
def _explorer_page(rendered_site) -> str:
    for page in PAGES:
        if 'id="concrete-explorer"' in rendered_site.html(page):
            return page
    pytest.fail("no page holds the Concrete explorer (#concrete-explorer): "
                "run scripts/insert_explorer.py on chapters/03_concrete.ipynb")


def test_explorer_matches_the_library_and_redraws(open_page, rendered_site):
    grid = json.loads(EXPLORER_GRID.read_text())
    page = _explorer_page(rendered_site)
    tab = open_page(page, 1280, fresh=True)
    tab.wait_for_selector("#concrete-explorer svg.concrete-explorer path", timeout=30000)
    assert not tab.errors, f"{page}: JavaScript errors {tab.errors}"
    computed = tab.evaluate(
        """async (grid) => {
        const logDensity = await window._ojs.ojsConnector.mainModule.value('concreteLogDensity');
        return grid.settings.map(s => s.points.map(p => logDensity(p.x, s.alpha, s.lambda)));
    }""",
        grid,
    )
    for setting, values in zip(grid["settings"], computed, strict=True):
        for point, value in zip(setting["points"], values, strict=True):
            assert value == pytest.approx(point["log_prob"], rel=1e-9, abs=1e-9), (
                f"explorer's log-density at x={point['x']}, alpha={setting['alpha']}, "
                f"lambda={setting['lambda']}: {value}, Concrete.log_prob: {point['log_prob']}"
            )
    # rounding probabilities shown: alpha / sum(alpha) for the sliders' start values
    shown = tab.locator("#concrete-explorer .rounding-probabilities").inner_text()
    start = tab.evaluate(
        "() => [...document.querySelectorAll('#concrete-explorer input[type=range]')].map(e => +e.value)"
    )
    lam, alpha = start[0], start[1:]
    assert len(alpha) == 3 and lam > 0
    for a in alpha:
        assert f"{a / sum(alpha):.2f}" in shown, (shown, start)
    # moving the temperature slider redraws the density
    before = tab.inner_html("#concrete-explorer svg.concrete-explorer")
    slider = tab.locator("#concrete-explorer input[type=range]").first
    slider.evaluate("(e) => { e.value = String(+e.max); e.dispatchEvent(new Event('input', {bubbles: true})); }")
    tab.wait_for_function(
        "(b) => document.querySelector('#concrete-explorer svg.concrete-explorer').innerHTML !== b",
        arg=before, timeout=10000,
    )
    after = tab.inner_html("#concrete-explorer svg.concrete-explorer")
    assert after != before
    assert not tab.errors, f"{page}: JavaScript errors after moving a slider {tab.errors}"
    assert not [u for u in open_page.blocked if "jsdelivr" in u and "mathjax" not in u], (
        "the explorer asked a CDN for a library: " + str(open_page.blocked)
    )


def test_explorer_grid_is_what_the_library_computes():
    """The JSON the browser test compares against is the library's ``Concrete.log_prob`` now."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_grid", ROOT / "scripts/explorer_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(EXPLORER_GRID.read_text()) == json.loads(json.dumps(module.grid())), (
        "tests/data/concrete_explorer_grid.json is stale: run scripts/explorer_grid.py"
    )


def test_pages_make_no_javascript_errors(open_page):
    for page in PAGES:
        tab = open_page(page)
        assert not tab.errors, f"{page}: JavaScript errors {tab.errors}"

