"""The browser check of the built site (tests/site_check.py), on tiny hand-written sites.

One test per failure kind: each breaks a clean fixture page in one way and asserts that the
checker fails on it; the clean fixture passes. The browser tests need Debian's Chromium
(`apt-get install -y chromium`, which .ci/run does before the tests) and skip without it.
"""

import base64
import pathlib

import pytest
import site_check

ROOT = pathlib.Path(__file__).resolve().parents[1]
MATHJAX = ROOT / "book" / "_static" / "mathjax"
# a 1x1 transparent PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
                       "60e6kgAAAABJRU5ErkJggg==")
# What Sphinx + myst-parser put in a page with math: a MathJax config, then the script.
HEAD = """<meta charset="utf-8"><title>{title}</title>
<script>window.MathJax = {{"options":
  {{"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}}}</script>
<script defer src="_static/mathjax/tex-chtml-full.js"></script>"""
CLEAN_BODY = r"""
<h1 id="top">A clean page</h1>
<p>Inline math <span class="math notranslate nohighlight">\(s = 1 - \lVert M \rVert_0 / n\)</span>,
a <a href="other.html#section">link with an anchor</a>, <a href="#top">a local anchor</a>,
<a href="_sources/page.ipynb">the notebook</a> and <a href="https://example.org/">an external
link</a> (a link is not a request).</p>
<div class="math notranslate nohighlight">\[ W' = M \odot W \]</div>
<img src="_images/dot.png" alt="a dot">
<div class="cell tag_raises-exception docutils container">
  <div class="cell_input docutils container"><pre>raise ValueError("on purpose")</pre></div>
  <div class="cell_output docutils container">
    <div class="output traceback highlight-ipythontb notranslate"><div class="highlight"><pre>
Traceback (most recent call last):
ValueError: on purpose</pre></div></div>
  </div>
</div>
<div class="cell docutils container">
  <div class="cell_output docutils container">
    <div class="output stream highlight-myst-ansi notranslate"><pre>accuracy 93.1 %</pre></div>
  </div>
</div>
<pre>code may show $$ x $$, \( y \) and {glue:text}`name` literally</pre>
"""
OTHER = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>other</title></head><body><main><article><h2 id="section">Section</h2>
<p>No math here.</p></article></main>
</body></html>"""
SEARCH_OK = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>search</title></head><body><main><ul class="search"><li>hit</li></ul></main></body></html>"""
SEARCH_EMPTY = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>search</title></head><body><main>
<p class="search-summary">Your search did not match any documents.</p></main>
</body></html>"""

needs_chromium = pytest.mark.skipif(
    site_check.find_chromium() is None,
    reason="Chromium is not installed (apt-get install -y chromium; .ci/run installs it)")


SWITCH = '<p class="language-switch"><a href="{href}" hreflang="{lang}">{label}</a></p>'
ZH_BODY = (SWITCH.format(href="../page.html", lang="en", label="English")
           + '<h1>剪枝</h1><p>准确率为 <span class="pasted-text">95.5</span> %，'
           + '<span class="pasted-text">高于</span>稠密模型。</p>')


def make_site(path, body=CLEAN_BODY, head=HEAD, search=SEARCH_OK, index=None, lang="en",
              zh_body=ZH_BODY, zh_lang="zh-CN"):
    """Write a tiny built site: index.html (a redirect), page.html, other.html, ...

    and its Chinese edition's page, zh_CN/page.html (`zh_body`; None for no Chinese edition).
    """
    (path / "_static").mkdir(parents=True)
    (path / "_static" / "mathjax").symlink_to(MATHJAX, target_is_directory=True)
    (path / "_images").mkdir()
    (path / "_images" / "dot.png").write_bytes(PNG)
    (path / "_sources").mkdir()
    (path / "_sources" / "page.ipynb").write_text("{}", encoding="utf-8")
    index = index or '<meta http-equiv="Refresh" content="0; url=page.html" />'
    (path / "index.html").write_text(index, encoding="utf-8")
    page = (f"<!DOCTYPE html><html lang=\"{lang}\"><head>{head.format(title='page')}</head>"
            f"<body><main><article>{body}</article></main></body></html>")
    (path / "page.html").write_text(page, encoding="utf-8")
    if zh_body is not None:
        (path / "zh_CN").mkdir()
        (path / "zh_CN" / "page.html").write_text(
            f'<!DOCTYPE html><html lang="{zh_lang}"><head><meta charset="utf-8"><title>页</title>'
            f'</head><body><main><article class="bd-article">{zh_body}</article></main>'
            "</body></html>", encoding="utf-8")
    (path / "other.html").write_text(OTHER, encoding="utf-8")
    if search is not None:
        (path / "search.html").write_text(search, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    pytest.importorskip("playwright", reason="playwright is not installed")
    with site_check.SiteChecker(screenshots=tmp_path_factory.mktemp("shots")) as c:
        yield c


def broken(body_old, body_new):
    assert body_old in CLEAN_BODY
    return CLEAN_BODY.replace(body_old, body_new)


TRACEBACK_CELL = '<div class="cell tag_raises-exception docutils container">'
BROKEN = {
    # kind: (site arguments, expected kinds; None = at least this kind)
    "math_not_typeset": (dict(head=HEAD.split("<script defer")[0]), {"math"}),
    # unbalanced delimiters: MathJax runs and leaves them as text
    "math_raw_dollars": (dict(body=CLEAN_BODY + "<p>left raw: $$ x = 1</p>"), {"math"}),
    "math_raw_parens": (dict(body=CLEAN_BODY + r"<p>left raw: \( x</p>"), {"math"}),
    "latex_macro_in_a_reference": (
        dict(body=CLEAN_BODY + r"<p>Yang et al., \emph Practicing Federated Learning.</p>"),
        {"math"}),
    "math_tex_error": (dict(body=CLEAN_BODY + r'<div class="math">\[ \frac{1} \]</div>'),
                       {"math"}),
    "glue_placeholder": (dict(body=CLEAN_BODY + "<p>We reach {glue:text}`acc:.1f` %.</p>"),
                         {"glue"}),
    "traceback_outside_raises_exception": (
        dict(body=broken(TRACEBACK_CELL, '<div class="cell docutils container">')),
        {"traceback"}),
    "traceback_printed_in_output": (
        dict(body=broken("accuracy 93.1 %", "Traceback (most recent call last):\n  x")),
        {"traceback"}),
    "stderr_output": (dict(body=broken('output stream highlight', 'output stderr highlight')),
                      {"stderr"}),
    "warning_in_output": (dict(body=broken("accuracy 93.1 %", "UserWarning: deprecated")),
                          {"stderr"}),
    "system_message": (dict(body=CLEAN_BODY + '<div class="system-message">WARNING/2</div>'),
                       {"stderr"}),
    "broken_image": (dict(body=CLEAN_BODY + '<img src="_images/missing.png" alt="x">'),
                     "image"),
    "broken_internal_link": (dict(body=CLEAN_BODY + '<a href="nowhere.html">x</a>'), {"link"}),
    "broken_anchor": (dict(body=CLEAN_BODY + '<a href="other.html#no-such-id">x</a>'),
                      {"link"}),
    "broken_redirect": (dict(index='<meta http-equiv="Refresh" content="0; url=gone.html" />'),
                        {"link"}),
    "console_error": (dict(body=CLEAN_BODY + "<script>console.error('boom')</script>"),
                      {"console"}),
    "uncaught_exception": (dict(body=CLEAN_BODY + "<script>notDefinedAnywhere()</script>"),
                           {"console"}),
    "external_request": (dict(head=HEAD + '<link rel="stylesheet" '
                                           'href="https://cdn.example.org/x.css">'),
                         {"external"}),
    "search_finds_nothing": (dict(search=SEARCH_EMPTY), {"search"}),
    "code_that_could_fit_scrolls": (
        dict(body=CLEAN_BODY + '<div class="highlight"><pre style="font-size: 40px">'
             + "x = 1  # " + "y" * 70 + "</pre></div>"), {"width"}),
    "image_wider_than_the_column": (
        dict(body=CLEAN_BODY + '<img src="_images/dot.png" style="width: 3000px" alt="x">'),
        {"width"}),
}

# the Chinese edition's page: a wrong lang, no switch, English glued into Chinese
BROKEN.update({
    "wrong_html_lang": (dict(zh_lang="en"), {"language"}),
    "no_language_switch": (dict(zh_body=ZH_BODY.split("</p>", 1)[1]), {"language"}),
    "english_glued_into_chinese": (
        dict(zh_body=ZH_BODY.replace(">高于<", ">within noise of<")), {"language"}),
})
ZH_CASES = ("wrong_html_lang", "no_language_switch", "english_glued_into_chinese")

WHOLE_SITE_CASES = ("broken_redirect", "broken_anchor", "broken_internal_link",
                    "search_finds_nothing")


@pytest.mark.slow
@needs_chromium
def test_clean_site_passes(checker, tmp_path):
    report = checker.check(make_site(tmp_path / "site"))
    assert report.problems == []
    assert report.pages == ["index.html", "other.html", "page.html", "search.html",
                            "zh_CN/page.html"]
    assert report.screenshots == [], "a passing page gets no screenshot unless asked"


@pytest.mark.slow
@needs_chromium
def test_a_code_line_over_the_limit_is_a_note_not_a_failure(checker, tmp_path):
    body = CLEAN_BODY + '<div class="highlight"><pre>' + "z" * 400 + "</pre></div>"
    report = checker.check(make_site(tmp_path / "site", body=body), pages=["page.html"],
                           search_word=None)
    assert report.ok, [str(p) for p in report.problems]
    assert len(report.notes) == 1 and "400-column" in report.notes[0]


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_checker_fails_on(checker, tmp_path, case):
    site_args, expected = BROKEN[case]
    site = make_site(tmp_path / "site", **site_args)
    page = "zh_CN/page.html" if case in ZH_CASES else "page.html"
    if case in WHOLE_SITE_CASES:
        report = checker.check(site)
    else:  # the break is in one page: open only that page (MathJax costs ~1 s a page)
        report = checker.check(site, pages=[page], search_word=None)
    assert not report.ok, f"{case}: the checker passed a broken site"
    if isinstance(expected, set):
        assert report.kinds() == expected, [str(p) for p in report.problems]
    else:
        assert expected in report.kinds(), [str(p) for p in report.problems]
    if case not in WHOLE_SITE_CASES:
        shots = [s.name for s in report.screenshots]
        expected_shot = page.replace("/", "__").replace(".html", ".png")
        assert shots == [expected_shot] and report.screenshots[0].stat().st_size > 1000, shots


@pytest.mark.slow
@needs_chromium
def test_math_is_typeset_with_the_network_blocked(checker, tmp_path):
    site = make_site(tmp_path / "site")
    report = checker.check(site, pages=["page.html"], screenshot_pages=("page.html",),
                           search_word=None)
    assert report.ok, [str(p) for p in report.problems]
    assert report.screenshots and report.screenshots[0].is_file()


@pytest.mark.parametrize("path", ["empty", "nested/empty"])
def test_list_pages_refuses_a_folder_without_index(tmp_path, path):
    folder = tmp_path / path
    folder.mkdir(parents=True, exist_ok=True)
    with pytest.raises(ValueError, match="root must be a built site with an index.html"):
        site_check.list_pages(folder)


def test_list_pages_skips_theme_assets(tmp_path):
    site = tmp_path / "site"
    for name in ("index.html", "a/b.html", "_static/x.html", "_sources/y.html",
                 "zh_CN/a/b.html", "zh_CN/_static/webpack-macros.html"):
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text("<p>x</p>", encoding="utf-8")
    assert site_check.list_pages(site) == ["a/b.html", "index.html", "zh_CN/a/b.html"]


def test_an_explicit_missing_browser_is_not_replaced(tmp_path):
    assert site_check.find_chromium(str(tmp_path / "no-browser")) is None


def test_checker_without_browser_says_how_to_install(monkeypatch):
    monkeypatch.setattr(site_check, "find_chromium", lambda explicit=None: None)
    with pytest.raises(FileNotFoundError, match="chromium must be installed"):
        site_check.SiteChecker()


def test_every_failure_kind_has_a_test_case():
    covered = {kinds if isinstance(kinds, str) else next(iter(kinds))
               for _, kinds in BROKEN.values()}
    # glyphs: Chromium falls back to any installed CJK font, so a page cannot be made to draw
    # boxes where one is installed; the rule is tested on the fonts Chromium reports (below)
    assert covered == set(site_check.KINDS) - {"load", "glyphs"}


@pytest.mark.parametrize("families, ok", [
    (["Noto Sans CJK SC", "DejaVu Sans"], True), (["WenQuanYi Micro Hei"], True),
    (["DejaVu Sans"], False), ([], False)])
def test_chinese_text_needs_a_cjk_font(families, ok):
    assert (site_check.missing_cjk_font("zh_CN/page.html", families) == []) is ok


@pytest.mark.slow
@needs_chromium
def test_chinese_text_is_drawn_with_a_cjk_font_where_one_is_installed(checker, tmp_path):
    if not checker.cjk_font:
        pytest.skip("no CJK font installed (apt-get install fonts-noto-cjk; .ci/run does)")
    site = make_site(tmp_path / "site")
    report = checker.check(site, pages=["zh_CN/page.html"], search_word=None)
    assert report.ok, [str(p) for p in report.problems]
