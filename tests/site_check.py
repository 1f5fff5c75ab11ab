"""Check a built book in headless Chromium with the network blocked, page by page.

Run it on the built site (after `jupyter-book build .`):

    python tests/site_check.py _build/html

It serves the folder on 127.0.0.1 (a free port), opens every HTML page in Debian's Chromium
driven by Playwright (the system browser: `apt-get install chromium`; never `playwright
install`), aborts and records every request that leaves the site, and fails on:

- ``math``: a math element not typeset by MathJax (no MathJax output, raw ``\\(``, ``\\[``,
  ``$$`` or ``\\begin{`` text left in the page, or a LaTeX text macro such as ``\\emph`` from a
  bibliography entry) or a MathJax TeX error box;
- ``glue``: a ``{glue`` placeholder left in the text (outside code listings);
- ``traceback``: a traceback outside a cell tagged ``raises-exception``;
- ``stderr``: a stderr output block, a warning printed by executed code, or a docutils
  system message / problematic node;
- ``image``: an image that does not load;
- ``link``: an internal link to a missing file or to a missing ``#anchor``;
- ``console``: a browser console error or an uncaught JavaScript exception;
- ``external``: a request to any other host (blocked);
- ``search``: the offline search page finding nothing for a word of the book;
- ``width``: at 1280 px, a code block whose longest line has at most 88 columns (the course's
  limit) still scrolls sideways, or an image is wider than the text column;
- ``load``: a page that does not load or cannot be inspected;
- ``language``: a page whose ``<html lang>`` is not its edition's (``en``, or ``zh-CN`` under
  ``zh_CN/``), a page without the link to its other-language counterpart, or a
  Chinese page with an English phrase (no Chinese in it) glued into its text, unless the text
  quotes it between quotation marks;
- ``glyphs``: where a CJK font is installed (``fc-list :lang=zh``), Chinese text that Chromium
  draws with no CJK-capable font (missing-glyph boxes).

A second edition built into ``zh_CN/`` (``tools/i18n.py build``) is checked in the same run,
its offline search too (for ``剪枝``).

Code lines over 88 columns that scroll sideways are reported as notes (not failures). On failure a
full-page screenshot of the page is saved (default `_build/site_check/`). Exit status 1 when
any problem is found. The server and the browser are stopped on every path out.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import http.server
import os
import pathlib
import posixpath
import re
import shutil
import sys
import threading
import time
import urllib.parse

KINDS = ("math", "glue", "traceback", "stderr", "image", "link", "console", "external",
         "search", "width", "load", "language", "glyphs")
TRANSLATION_DIR = "zh_CN/"  # the Chinese edition, inside the English site
TRANSLATION_SEARCH_WORD = "剪枝"
# A font family that draws Chinese (what Chromium reports for the glyphs it drew).
CJK_FAMILY = re.compile(r"CJK|Han Sans|Han Serif|Hei|Song|Ming|Kai|WenQuanYi|Fallback|PingFang|"
                        r"YaHei|SimSun|Noto (Sans|Serif) (SC|TC)", re.IGNORECASE)
# A glued value on a Chinese page may hold numbers, units and names, not English words.
ENGLISH_WORD = re.compile(r"\b[a-z]{3,}\b")
CJK_CHAR = re.compile(r"[\u4e00-\u9fff]")
CODE_COLUMNS = 88  # the course's limit for a line of code
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium",
                       "/usr/bin/chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 900}
PAGE_TIMEOUT_MS = 90_000
SKIP_DIRS = ("_static/", "_sources/", "_images/", "_downloads/")

# Runs in the page after load: waits for MathJax, then collects everything the checks need.
INSPECT_JS = r"""
async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const mathEls = Array.from(document.querySelectorAll("span.math, div.math"));
  const hasMathJaxScript = !!document.querySelector('script[src*="mathjax"]');
  let mathjax = "absent";
  if (hasMathJaxScript) {
    const t0 = Date.now();
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
      if (Date.now() - t0 > 10000) break;
      await sleep(50);
    }
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      try { await MathJax.startup.promise; mathjax = "done"; }
      catch (e) { mathjax = "failed: " + e; }
    }
  }
  if (document.fonts) { await document.fonts.ready; }
  // Load every image now (lazy ones too), so a broken one is told from a late one.
  const settle = Promise.all(Array.from(document.images).map(async (img) => {
    if (img.loading === "lazy") img.loading = "eager";
    try { await img.decode(); } catch (e) { /* reported below as not loaded */ }
  }));
  await Promise.race([settle, sleep(20000)]);
  const visible = (root) => {
    const out = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
      acceptNode(n) {
        const p = n.parentElement;
        if (!p || p.closest("script, style, noscript, textarea, pre, code, mjx-container,"
            + " mjx-assistive-mml, .highlight")) return NodeFilter.FILTER_REJECT;
        return NodeFilter.FILTER_ACCEPT;
      },
    });
    while (walker.nextNode()) out.push(walker.currentNode.nodeValue);
    return out.join("");
  };
  const body = document.querySelector("main") || document.body;
  const prose = visible(body);
  const untypeset = mathEls.filter((el) => !el.querySelector("mjx-container"))
      .map((el) => el.textContent.trim().slice(0, 80));
  const rawTex = [];
  for (const pat of ["\\(", "\\[", "$$", "\\begin{", "\\emph", "\\textit", "\\textbf"]) {
    const i = prose.indexOf(pat);
    if (i >= 0) rawTex.push(prose.slice(Math.max(0, i - 30), i + 50));
  }
  const mathErrors = Array.from(document.querySelectorAll("mjx-merror"))
      .map((el) => (el.getAttribute("data-mjx-error") || el.textContent).slice(0, 80));
  const gi = prose.indexOf("{glue");  // code listings may show the syntax on purpose
  const cellOf = (el) => el.closest(".cell");
  const allowed = (el) => {
    const c = cellOf(el);
    return !!c && c.classList.contains("tag_raises-exception");
  };
  const tracebacks = [];
  for (const el of document.querySelectorAll(".output.traceback, .cell_output, .output")) {
    const isTb = el.matches(".output.traceback")
        || /Traceback \(most recent call last\)/.test(el.textContent);
    if (isTb && !allowed(el)) tracebacks.push(el.textContent.trim().slice(0, 120));
  }
  const stderr = [];
  for (const el of document.querySelectorAll(".output.stderr, .system-message, .problematic")) {
    stderr.push(el.className + ": " + el.textContent.trim().slice(0, 120));
  }
  const warnRe = /(^|\n)\s*(\w*Warning: |WARNING:|W\d{4} \d\d:\d\d|E\d{4} \d\d:\d\d)/;
  const printed = ".cell_output .output.stream, .cell_output .output.text_plain";
  for (const el of document.querySelectorAll(printed)) {
    if (warnRe.test(el.textContent) && !allowed(el)) stderr.push("warning in output: "
        + el.textContent.trim().slice(0, 120));
  }
  const images = Array.from(document.images).map((img) => ({
    src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
  }));
  const links = Array.from(document.querySelectorAll("a[href]")).map((a) => a.href);
  const ids = Array.from(document.querySelectorAll("[id]")).map((e) => e.id)
      .concat(Array.from(document.querySelectorAll("a[name]")).map((e) => e.name));
  const col = document.querySelector("article") || body;
  const colWidth = col.getBoundingClientRect().width;
  const wideCode = Array.from(document.querySelectorAll(".cell_input pre, div.highlight pre"))
      .filter((p) => p.scrollWidth > p.clientWidth + 2)
      .map((p) => p.textContent.split("\n").reduce((a, b) => (b.length > a.length ? b : a), ""));
  const wideImages = Array.from(document.images)
      .filter((i) => i.getBoundingClientRect().width > colWidth + 2).map((i) => i.src);
  const cjk = /[\u4e00-\u9fff]/;
  // the element holding the first visible Chinese text node (fonts are reported per text node)
  const cjkWalker = document.createTreeWalker(document.querySelector("article") || body,
      NodeFilter.SHOW_TEXT, {acceptNode: (n) => (cjk.test(n.nodeValue)
          && n.parentElement && n.parentElement.getClientRects().length
          ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP)});
  const cjkEl = cjkWalker.nextNode() ? cjkWalker.currentNode.parentElement : null;
  if (cjkEl) cjkEl.setAttribute("data-site-check-cjk", "1");
  return {lang: document.documentElement.lang,
          isArticle: !!document.querySelector("article.bd-article"),
          hasSwitch: !!document.querySelector(".language-switch a[hreflang]"),
          pasted: Array.from(document.querySelectorAll(".pasted-text")).map((el) => ({
            text: el.textContent.trim(),
            // a value between quotation marks is quoted (a library's message), not prose
            quoted: /[“"「]\s*$/.test(el.previousSibling ? el.previousSibling.textContent : "")
                && /^\s*[”"」]/.test(el.nextSibling ? el.nextSibling.textContent : ""),
          })),
          hasCjk: !!cjkEl,
          mathjax, nMath: mathEls.length, untypeset, rawTex, mathErrors,
          glue: gi >= 0 ? prose.slice(Math.max(0, gi - 30), gi + 60) : null,
          tracebacks, stderr, images, links, ids, wideCode, wideImages};
}
"""

SEARCH_JS = r"""
async () => {
  const t0 = Date.now();
  while (Date.now() - t0 < 30000) {
    const hits = document.querySelectorAll("#search-results li, ul.search li");
    if (hits.length) return hits.length;
    const status = document.querySelector("#search-results p.search-summary, .search-summary");
    if (status && /did not match|no results/i.test(status.textContent)) return 0;
    await new Promise((r) => setTimeout(r, 100));
  }
  return 0;
}
"""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One failure found on one page."""

    kind: str
    page: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.page}: {self.detail}"


@dataclasses.dataclass
class Report:
    """What a check of a site found: problems (failures), notes, screenshots."""

    pages: list[str] = dataclasses.field(default_factory=list)
    problems: list[Problem] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    screenshots: list[pathlib.Path] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def kinds(self) -> set[str]:
        """The set of problem kinds found."""
        return {p.kind for p in self.problems}


def find_chromium(explicit: str | None = None) -> str | None:
    """Path of the system Chromium binary, or None.

    Args:
        explicit: a path to use instead of the defaults (also read from `$CHROMIUM`).

    Returns:
        The first existing executable among `explicit`, `$CHROMIUM`, Debian's binary
        (`/usr/lib/chromium/chromium`, which skips the launcher script's stderr chatter)
        and `chromium` on the PATH; None if there is none.

    Example:
        >>> find_chromium("/no/such/browser") is None
        True
    """
    def usable(path):
        return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)

    if explicit:
        return explicit if usable(explicit) else None
    for candidate in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES,
                      shutil.which("chromium")):
        if usable(candidate):
            return candidate
    return None


def list_pages(root: pathlib.Path) -> list[str]:
    """Every HTML page of a built site, as sorted POSIX paths relative to `root`.

    Args:
        root: the site folder (e.g. `_build/html`).

    Returns:
        Paths like `index.html`, `notebooks/01_background.html`; theme assets under
        `_static/` and copied sources under `_sources/` (of either edition) are not pages.

    Raises:
        ValueError: if `root` is not a folder holding an `index.html`.

    Example:
        >>> list_pages(pathlib.Path("/no/such/site"))
        Traceback (most recent call last):
        ...
        ValueError: root must be a built site with an index.html, got /no/such/site
    """
    root = pathlib.Path(root)
    if not (root / "index.html").is_file():
        raise ValueError(f"root must be a built site with an index.html, got {root}")
    pages = [p.relative_to(root).as_posix() for p in root.rglob("*.html")]
    return sorted(p for p in pages
                  if not any(f"/{part}" in f"/{p}" for part in SKIP_DIRS))  # zh_CN/_static/ too


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log on stderr
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # The browser may drop a connection mid-file (a page closed while a font loads).
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(root: pathlib.Path):
    """Serve `root` over HTTP on 127.0.0.1 at a free port; yields the base URL.

    The server thread is shut down and the socket closed when the block exits.
    """
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class SiteChecker:
    """A headless Chromium with the network blocked, reusable for several sites.

    Use as a context manager; the browser and the Playwright driver stop on exit::

        with SiteChecker() as checker:
            report = checker.check("_build/html")
    """

    def __init__(self, chromium: str | None = None, screenshots: str | os.PathLike | None = None):
        self.chromium = find_chromium(chromium)
        if self.chromium is None:
            raise FileNotFoundError(
                "chromium must be installed (apt-get install -y chromium), got none at "
                + ", ".join(CHROMIUM_CANDIDATES))
        self.screenshots = pathlib.Path(screenshots) if screenshots else None
        self.cjk_font = cjk_font_installed()
        self._stack = contextlib.ExitStack()
        self._browser = None

    def __enter__(self) -> SiteChecker:
        from playwright.sync_api import sync_playwright  # pinned in requirements.txt

        try:
            playwright = self._stack.enter_context(sync_playwright())
            # Playwright gives every launch a fresh, temporary --user-data-dir of its own.
            self._browser = playwright.chromium.launch(
                executable_path=self.chromium, headless=True, args=CHROMIUM_FLAGS)
            self._stack.callback(self._browser.close)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def check(self, root: str | os.PathLike, pages: list[str] | None = None,
              screenshot_pages: tuple[str, ...] = (), search_word: str | None = "federated"
              ) -> Report:
        """Open every page of the site at `root` and return what is wrong with it.

        Args:
            root: the built site folder (holds `index.html`).
            pages: pages to open (relative paths); default every page (`list_pages`).
            screenshot_pages: pages to screenshot even when they pass.
            search_word: a word the offline search must find (on `search.html`, if the
                site has one); None skips the search check.

        Returns:
            A `Report`; `report.ok` is False when any problem was found.
        """
        if self._browser is None:
            raise RuntimeError("SiteChecker must be used inside a with block")
        root = pathlib.Path(root).resolve()
        pages = list_pages(root) if pages is None else list(pages)
        report = Report(pages=pages)
        start = time.monotonic()
        with serve(root) as base:
            context = self._browser.new_context(viewport=VIEWPORT, service_workers="block")
            try:
                external: list[str] = []
                context.route("**/*", functools.partial(_route, base, external))
                anchors: dict[str, set[str]] = {}
                links: dict[str, list[str]] = {}
                for page_name in pages:
                    self._check_page(context, base, root, page_name, report, external,
                                     anchors, links, screenshot_pages)
                if search_word and (root / "search.html").is_file():
                    self._check_search(context, base, search_word, report)
                if search_word and (root / TRANSLATION_DIR / "search.html").is_file():
                    self._check_search(context, base + TRANSLATION_DIR,
                                       TRANSLATION_SEARCH_WORD, report)
            finally:
                context.close()
        _check_links(root, base, links, anchors, report)
        report.seconds = time.monotonic() - start
        return report

    def _check_page(self, context, base, root, page_name, report, external, anchors, links,
                    screenshot_pages):
        redirect = _redirect_target(root / page_name)
        if redirect is not None:  # a meta-refresh page (the book's index.html): a link
            links[page_name] = [urllib.parse.urljoin(base + page_name, redirect)]
            return
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"uncaught {e}"))
        page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}")
                if r.status >= 400 else None)
        found: list[Problem] = []
        try:
            external.clear()
            page.goto(base + page_name, wait_until="load", timeout=PAGE_TIMEOUT_MS)
            info = page.evaluate(INSPECT_JS)
            page.wait_for_timeout(50)  # let late console messages arrive
            found += _problems_from(page_name, info)
            found += _language_problems(page_name, info)
            if info["hasCjk"] and self.cjk_font:
                found += _glyph_problems(context, page, page_name)
            found += [Problem("console", page_name, e) for e in dict.fromkeys(errors)
                      if not _caused_by_block(e, external)]
            found += [Problem("external", page_name, f"request blocked: {u}")
                      for u in dict.fromkeys(external)]
            anchors[page_name] = set(info["ids"])
            links[page_name] = info["links"]
            for line in info["wideCode"]:
                if len(line) <= CODE_COLUMNS:  # it could fit: the layout is at fault
                    found.append(Problem("width", page_name, f"a {len(line)}-column code line "
                                         f"scrolls sideways at 1280 px: {line[:100]!r}"))
                else:
                    report.notes.append(f"{page_name}: a {len(line)}-column code line (over "
                                        f"{CODE_COLUMNS}) scrolls sideways: {line[:100]!r}")
            found += [Problem("width", page_name, f"image wider than the text column: {u}")
                      for u in info["wideImages"]]
        except Exception as exc:  # noqa: BLE001 - a page that cannot be checked is a failure
            found.append(Problem("load", page_name, f"page could not be checked: {exc}"))
        report.problems += found
        if self.screenshots and (found or page_name in screenshot_pages):
            self.screenshots.mkdir(parents=True, exist_ok=True)
            shot = self.screenshots / (page_name.replace("/", "__").replace(".html", ".png"))
            if not found:  # a passing page asked for: show its first display equation
                page.evaluate("(document.querySelector('div.math mjx-container')"
                              " || document.querySelector('mjx-container'))"
                              "?.scrollIntoView({block: 'center'})")
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shot), full_page=bool(found), timeout=PAGE_TIMEOUT_MS)
                report.screenshots.append(shot)
        page.close()

    def _check_search(self, context, base, word, report):
        page = context.new_page()
        try:
            page.goto(f"{base}search.html?q={urllib.parse.quote(word)}", wait_until="load",
                      timeout=PAGE_TIMEOUT_MS)
            if not page.evaluate(SEARCH_JS):
                report.problems.append(Problem("search", "search.html",
                                               f"offline search found nothing for {word!r}"))
        except Exception as exc:  # noqa: BLE001
            report.problems.append(Problem("search", "search.html", f"search failed: {exc}"))
        finally:
            page.close()


def cjk_font_installed() -> bool:
    """Whether fontconfig knows a font that covers Chinese (`fc-list :lang=zh`)."""
    import subprocess

    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    result = subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True,
                            timeout=60, check=False)
    return bool(result.stdout.strip())


def _language_problems(page: str, info: dict) -> list[Problem]:
    """The page's edition: its `<html lang>`, its language switch, no English glued in Chinese."""
    chinese = page.startswith(TRANSLATION_DIR)
    expected = "zh-CN" if chinese else "en"
    found = []
    if info["lang"] != expected:
        found.append(Problem("language", page, f"<html lang> is {info['lang']!r}, "
                             f"expected {expected!r}"))
    if info["isArticle"] and not info["hasSwitch"]:
        found.append(Problem("language", page, "no link to the page in the other language"))
    if chinese:
        found += [Problem("language", page, f"English glued into the Chinese text: {p['text']!r}")
                  for p in info["pasted"] if english_phrase(p["text"]) and not p["quoted"]][:5]
    return found


def english_phrase(text: str) -> bool:
    """Whether a glued value is English prose: English words and no Chinese at all.

    Example:
        >>> english_phrase("within noise of"), english_phrase("基于 requirements.txt")
        (True, False)
        >>> english_phrase("95.6 %"), english_phrase("Multi-Krum")
        (False, False)
    """
    return bool(ENGLISH_WORD.search(text)) and not CJK_CHAR.search(text)


def _glyph_problems(context, page, page_name: str) -> list[Problem]:
    """Chinese text drawn without a CJK font: the fonts Chromium used for the marked element."""
    cdp = context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]  # whole tree known
        node = cdp.send("DOM.querySelector", {"nodeId": root,
                                              "selector": "[data-site-check-cjk]"})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    finally:
        cdp.detach()
    return missing_cjk_font(page_name, [f["familyName"] for f in fonts])


def missing_cjk_font(page: str, families: list[str]) -> list[Problem]:
    """A `glyphs` problem unless one of the fonts Chromium drew Chinese text with covers it.

    Example:
        >>> missing_cjk_font("zh_CN/a.html", ["Noto Sans CJK SC", "DejaVu Sans"])
        []
        >>> [p.kind for p in missing_cjk_font("zh_CN/a.html", ["DejaVu Sans"])]
        ['glyphs']
    """
    if any(CJK_FAMILY.search(family) for family in families):
        return []
    return [Problem("glyphs", page, f"Chinese text drawn without a CJK font (fonts used: "
                    f"{', '.join(families) or 'none'})")]


def _redirect_target(path: pathlib.Path) -> str | None:
    """The URL of a `<meta http-equiv="refresh">` page, or None for a normal page."""
    head = path.read_text(encoding="utf-8", errors="replace")[:2000]
    match = re.search(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', head,
                      re.IGNORECASE)
    return match.group(1) if match else None


def _route(base: str, external: list[str], route) -> None:
    url = route.request.url
    if url.startswith(base) or url.startswith(("data:", "blob:", "about:")):
        route.continue_()
    else:
        external.append(url)
        route.abort("blockedbyclient")


def _caused_by_block(message: str, external: list[str]) -> bool:
    """A console error that only reports a request we blocked (already an `external`)."""
    return "ERR_BLOCKED_BY_CLIENT" in message or any(u in message for u in external)


def _problems_from(page: str, info: dict) -> list[Problem]:
    found = []
    if info["nMath"] and info["mathjax"] != "done":
        found.append(Problem("math", page, f"MathJax did not run ({info['mathjax']}) on "
                             f"{info['nMath']} math elements"))
    found += [Problem("math", page, f"not typeset: {t!r}") for t in info["untypeset"][:5]]
    found += [Problem("math", page, f"raw TeX in the text: {t!r}") for t in info["rawTex"]]
    found += [Problem("math", page, f"MathJax error: {t!r}") for t in info["mathErrors"][:5]]
    if info["glue"]:
        found.append(Problem("glue", page, f"placeholder left: {info['glue']!r}"))
    found += [Problem("traceback", page, t) for t in info["tracebacks"][:5]]
    found += [Problem("stderr", page, t) for t in info["stderr"][:5]]
    found += [Problem("image", page, f"does not load: {i['src']}")
              for i in info["images"] if not i["ok"]]
    return found


def _check_links(root: pathlib.Path, base: str, links: dict[str, list[str]],
                 anchors: dict[str, set[str]], report: Report) -> None:
    """Internal links must reach a file, and an anchor on a checked page must exist."""
    for page, hrefs in links.items():
        for href in dict.fromkeys(hrefs):
            if not href.startswith(base):
                continue  # other hosts are links, not requests: not fetched here
            parsed = urllib.parse.urlsplit(href)
            rel = posixpath.normpath(urllib.parse.unquote(parsed.path[len(
                urllib.parse.urlsplit(base).path):]) or "index.html")
            if rel in (".", ""):
                rel = "index.html"
            target = root / rel
            if target.is_dir():
                rel = posixpath.join(rel, "index.html")
                target = root / rel
            if not target.is_file():
                report.problems.append(Problem("link", page, f"missing target: {href}"))
            elif parsed.fragment and rel in anchors:
                frag = urllib.parse.unquote(parsed.fragment)
                if frag not in anchors[rel]:
                    report.problems.append(Problem("link", page, f"missing anchor: {href}"))


def main(argv: list[str] | None = None) -> int:
    """Command line: check a built site, print the problems, exit 1 if any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="_build/html", help="built site folder")
    parser.add_argument("--screenshots", default=None,
                        help="folder for screenshots (default: <site>/../site_check)")
    parser.add_argument("--screenshot-page", action="append", default=[],
                        help="also screenshot this page when it passes (repeatable)")
    parser.add_argument("--chromium", default=None, help="Chromium binary")
    parser.add_argument("--search-word", default="federated")
    args = parser.parse_args(argv)
    site = pathlib.Path(args.site)
    shots = pathlib.Path(args.screenshots) if args.screenshots else site.parent / "site_check"
    try:
        with SiteChecker(args.chromium, screenshots=shots) as checker:
            report = checker.check(site, screenshot_pages=tuple(args.screenshot_page),
                                   search_word=args.search_word or None)
    except (FileNotFoundError, ValueError) as exc:
        print(f"site check: {exc}", file=sys.stderr)
        return 2
    for note in report.notes[:40]:
        print(f"note: {note}")
    if len(report.notes) > 40:
        print(f"note: ... and {len(report.notes) - 40} more notes")
    for problem in report.problems:
        print(problem)
    for shot in report.screenshots:
        print(f"screenshot: {shot}")
    print(f"site check: {len(report.pages)} pages, {len(report.problems)} problems, "
          f"{len(report.notes)} notes, {report.seconds:.0f} s "
          f"({', '.join(sorted(report.kinds())) or 'all checks passed'})")
    failed = len({p.page for p in report.problems})
    print(f"pages: {len(report.pages) - failed} passed, {failed} failed")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
