"""The Chinese edition (中文版): extract, check, translate and build, from the English build's run.

The English prose is the source; `book/locale/zh_CN/LC_MESSAGES/**.po` holds its translation, one
catalogue per page (`gettext_compact: False`), in the gettext format that sphinx-intl and every
translation editor (Poedit, Weblate) read. Run from the repository root, after
`jupyter-book build .` (whose executions, kept in `_build/.jupyter_cache`, all of these reuse):

    python tools/i18n.py extract   # English text -> .pot -> .po (sphinx-intl); edits turn fuzzy
    python tools/i18n.py check     # the CI gate: fails on any untranslated, fuzzy or broken entry
    python tools/i18n.py build     # _build/html/zh_CN/, executing nothing
    python tools/i18n.py todo notebooks/05_pruning_in_fl   # a page's open entries
    python tools/i18n.py review notebooks/05_pruning_in_fl # every entry, English and Chinese
    python tools/i18n.py apply notebooks/05_pruning_in_fl FILE

`todo` prints each open entry as a `=== N` header and its raw English; put the Chinese under the
same headers in a file and `apply` writes it into the page's catalogue (raw text, no escaping)
and clears the fuzzy flags. Poedit or any .po editor works too.

Glued values: a chapter glues through `prunefl_lite.zh.glue`, which glues every text value's
Chinese twin under `KEY_zh`; a translation cites `KEY_zh` wherever it exists.

The gate (`check`) extracts the English text afresh, so an English paragraph edited without its
translation fails CI: untranslated (no msgstr), fuzzy (the English changed since the translation),
or broken (a role, a math span, a citation or a link target of the English missing from the
Chinese, or a glue role citing KEY where KEY_zh exists).
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import sys
import tempfile

from babel.messages import pofile

ROOT = pathlib.Path(__file__).resolve().parents[1]
LANGUAGE = "zh_CN"
LOCALE_DIR = ROOT / "book" / "locale"
CATALOGUES = LOCALE_DIR / LANGUAGE / "LC_MESSAGES"
HTML_DIR = ROOT / "_build" / "html"
ZH_HTML_DIR = HTML_DIR / LANGUAGE
CACHE_DIR = ROOT / "_build" / ".jupyter_cache"  # where the English build keeps its executions
# The book's title and author line (_config.yml) in the Chinese edition.
TITLE = "联邦学习中的剪枝：一门可执行的课程"
AUTHOR = "prunefl-course 课程作者"
# No "#: path:line" comments: they name the folder of whoever ran extract, so every contributor
# would rewrite every catalogue.
GETTEXT_OVERRIDES = {"gettext_compact": False, "gettext_uuid": False,
                     "gettext_location": False, "gettext_additional_targets": []}
# Markup that a translation keeps verbatim: MyST roles with their target, math and link targets.
ROLE = re.compile(r"\{[a-z:-]+\}`[^`]*`")
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\s](?:[^$]*[^$\s])?\$", re.S)
LINK_TARGET = re.compile(r"\]\(([^)\s]+)\)")
GLUE_ROLE = re.compile(r"^\{glue(?::[a-z]+)?\}`([^`]*)`$")
# A translation is parsed again as Markdown: starting like a list item, heading or quote, it
# becomes one, and Sphinx then keeps the English (write "5. 联邦..." with a backslash before ".").
BLOCK_START = re.compile(r"^(\d+[.)]|[-*+]|#{1,6}|>)(\s|$)")
MAX_SHOWN = 20


def _build(builder: str, outdir: pathlib.Path, doctrees: pathlib.Path,
           overrides: dict, strict: bool) -> int:
    """Run jupyter-book's Sphinx build with the book's `_config.yml` plus `overrides`."""
    from jupyter_book.sphinx import build_sphinx

    overrides = dict(overrides, latex_individualpages=False, nitpicky=strict)
    result = build_sphinx(ROOT, outdir, path_config=ROOT / "_config.yml", noconfig=True,
                          confoverrides=overrides, doctreedir=doctrees, builder=builder,
                          warningiserror=strict, keep_going=strict, freshenv=True)
    if isinstance(result, Exception):
        raise result
    return result


def write_templates(pot_dir: pathlib.Path) -> pathlib.Path:
    """Extract every page's translatable English text into `pot_dir`.

    The English build's executions are used (a `{glue:figure}` caption exists only where its
    figure was glued), so run `jupyter-book build .` first; a notebook changed since then is
    executed here.

    Returns:
        `pot_dir`, holding one `.pot` per page (`book/faq.pot`, `notebooks/05_....pot`).
    """
    overrides = dict(GETTEXT_OVERRIDES, nb_execution_mode="cache",
                     nb_execution_cache_path=str(CACHE_DIR))
    status = _build("gettext", pot_dir, pot_dir / ".doctrees", overrides, strict=False)
    if status:
        raise SystemExit(f"i18n: the gettext build failed with status {status}")
    shutil.rmtree(pot_dir / ".doctrees", ignore_errors=True)
    return pot_dir


def extract() -> None:
    """Refresh the catalogues from the English text; changed entries turn fuzzy."""
    from sphinx_intl import basic

    with tempfile.TemporaryDirectory() as tmp:
        pot_dir = write_templates(pathlib.Path(tmp) / "gettext")
        basic.update(str(LOCALE_DIR), str(pot_dir), (LANGUAGE,), line_width=100)
    for path in sorted(CATALOGUES.rglob("*.po")):
        catalogue = read_catalogue(path)
        if tidy_header(catalogue):
            write_catalogue(path, catalogue)
    print(f"i18n: catalogues updated under {CATALOGUES.relative_to(ROOT)}")


def markup(text: str) -> list[str]:
    """The markup of `text` a translation must keep: roles, math spans and link targets.

    Example:
        >>> markup("at {glue:text}`acc` (see {cite}`x`), $a_i$ and [here](p.md)")
        ['$a_i$', '(p.md)', '{cite}`x`', '{glue:text}`acc`']
    """
    found = ROLE.findall(text) + MATH.findall(text)
    found += [f"({target})" for target in LINK_TARGET.findall(text)]
    return sorted(found)


def _glue_twin(english: str, chinese: str) -> bool:
    """Whether `chinese` is the glue role `english` with `_zh` appended to its key.

    Example:
        >>> _glue_twin("{glue:text}`gap:.1f`", "{glue:text}`gap_zh:.1f`")
        True
    """
    eng, zh = GLUE_ROLE.match(english), GLUE_ROLE.match(chinese)
    if not (eng and zh and english.split("`")[0] == chinese.split("`")[0]):
        return False
    key, _, spec = eng.group(1).partition(":")
    return zh.group(1) == f"{key}_zh" + (f":{spec}" if spec else "")


def broken_markup(msgid: str, msgstr: str) -> list[str]:
    """The pieces of markup of `msgid` that `msgstr` lost or changed (empty when all kept).

    Example:
        >>> broken_markup("{glue:text}`gap` points", "{glue:text}`gap` 个百分点")
        []
        >>> broken_markup("{glue:text}`verdict`", "{glue:text}`verdict_zh`")
        []
        >>> broken_markup("$x$ and {cite}`a`", "$x$ 与 {cite}`b`")
        ['{cite}`a`']
    """
    english, chinese = markup(msgid), markup(msgstr)
    for piece in list(english):
        twin = next((c for c in chinese if c == piece or _glue_twin(piece, c)), None)
        if twin is not None:
            english.remove(piece)
            chinese.remove(twin)
    return english


def page_of(po_path: pathlib.Path) -> str:
    """The page name of a catalogue: `notebooks/05_pruning_in_fl` for `.../05_....po`."""
    return po_path.relative_to(CATALOGUES).with_suffix("").as_posix()


HEADER_COMMENT = ("# Chinese (zh_CN) translation of one page of the course 'Pruning in Federated "
                  "Learning'.\n# Edit with tools/i18n.py (todo, review, apply) or any .po editor; "
                  "tools/i18n.py check is the CI gate.")


def tidy_header(catalogue) -> bool:
    """Give a catalogue the course's header, not sphinx-intl's placeholders, and unfuzzy it.

    Returns:
        True if the header changed (the file needs writing).
    """
    before = (catalogue.fuzzy, catalogue.project, catalogue.header_comment)
    catalogue.fuzzy = False  # a fuzzy header marks the whole file as a draft to gettext tools
    catalogue.project = "prunefl-course"
    catalogue.version = ""
    catalogue.copyright_holder = "the prunefl-course authors"
    catalogue.last_translator = "the prunefl-course translators"
    catalogue.language_team = "zh_CN"
    catalogue.revision_date = catalogue.creation_date  # deterministic: no diff on every run
    catalogue.header_comment = HEADER_COMMENT
    return before != (catalogue.fuzzy, catalogue.project, catalogue.header_comment)


def write_catalogue(path: pathlib.Path, catalogue) -> None:
    """Write a catalogue the one way this project does (100 columns, no location comments)."""
    tidy_header(catalogue)
    with path.open("wb") as handle:
        pofile.write_po(handle, catalogue, width=100, no_location=True)


def read_catalogue(path: pathlib.Path):
    """One `.po` file as a babel `Catalog`."""
    with path.open("rb") as handle:
        return pofile.read_po(handle, locale=LANGUAGE)


def glued_keys() -> dict[str, set[str]]:
    """The keys each page glued in the English build's executions: {page: {key, ...}}."""
    from jupyter_cache import get_cache

    found: dict[str, set[str]] = {}
    cache = get_cache(str(CACHE_DIR))
    for record in cache.list_cache_records():
        page = pathlib.Path(record.uri).resolve().relative_to(ROOT).with_suffix("").as_posix()
        notebook = cache.get_cache_bundle(record.pk).nb
        found[page] = {output["metadata"]["scrapbook"]["name"]
                       for cell in notebook.cells for output in cell.get("outputs", [])
                       if "scrapbook" in output.get("metadata", {})}
    return found


def english_glue(msgstr: str, keys: set[str]) -> list[str]:
    """Glue roles of a translation that cite KEY where the page also glued KEY_zh.

    Example:
        >>> english_glue("{glue:text}`verdict` 与 {glue:text}`acc:.1f`", {"verdict_zh", "acc"})
        ['verdict']
    """
    cited = re.findall(r"\{glue(?::[a-z]+)?\}`([^`:]+)", msgstr)
    return [key for key in cited if f"{key}_zh" in keys]


def problems_in(pot_path: pathlib.Path, po_path: pathlib.Path,
                keys: set[str] = frozenset()) -> list[str]:
    """Every English entry of one page that lacks a sound, current translation.

    `keys` are the page's glued keys: a translation citing KEY where KEY_zh exists is broken
    (the English text of a glued phrase would sit in a Chinese sentence).
    """
    page = page_of(po_path) if po_path.exists() else pot_path.stem
    if not po_path.exists():
        return [f"{page}: no catalogue ({po_path.relative_to(ROOT)}); run `tools/i18n.py extract`"]
    catalogue = read_catalogue(po_path)
    found = [f"{page}: the catalogue's header is marked fuzzy"] if catalogue.fuzzy else []
    for entry in read_catalogue(pot_path):
        if not entry.id:
            continue
        done = catalogue.get(entry.id)
        label = f"{page}: {entry.id[:70]!r}"
        if done is None or not done.string:
            found.append(f"{label} untranslated")
        elif done.fuzzy:
            found.append(f"{label} fuzzy (the English changed since it was translated)")
        elif lost := broken_markup(entry.id, done.string):
            found.append(f"{label} lost its markup {lost}")
        elif english := english_glue(done.string, keys):
            found.append(f"{label} cites the English of {english}: use KEY_zh")
        elif BLOCK_START.match(done.string):
            found.append(f"{label} starts like a Markdown list, heading or quote "
                         "(Sphinx would keep the English): escape it, e.g. 5\\. ...")
    return found


def check() -> int:
    """The CI gate: zero untranslated, zero fuzzy, zero broken entries on every page."""
    with tempfile.TemporaryDirectory() as tmp:
        pot_dir = write_templates(pathlib.Path(tmp) / "gettext")
        pots = sorted(pot_dir.rglob("*.pot"))
        keys = glued_keys()
        found = []
        for pot in pots:
            page = pot.relative_to(pot_dir).with_suffix("").as_posix()
            found += problems_in(pot, CATALOGUES / f"{page}.po", keys.get(page, set()))
    for line in found[:MAX_SHOWN]:
        print(f"i18n: {line}")
    if len(found) > MAX_SHOWN:
        print(f"i18n: ... and {len(found) - MAX_SHOWN} more")
    print(f"i18n: {len(pots)} pages, {len(found)} entries need translation work")
    return 1 if found else 0


def cached_executions() -> int:
    """How many executions the English build left in its jupyter-cache (refusing a stale one)."""
    from jupyter_cache import get_cache

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from course_site import CACHE_STAMP, execution_digest

    stamp = CACHE_DIR / CACHE_STAMP
    digest = execution_digest(ROOT)
    if not stamp.exists() or stamp.read_text() != digest:
        raise SystemExit("i18n: the English build's executions are missing or older than "
                         "prunefl_lite: run `jupyter-book build .` first")
    return len(get_cache(str(CACHE_DIR)).list_cache_records())


def build(strict: bool = True) -> int:
    """Build the Chinese edition into `_build/html/zh_CN/` from the English build's executions.

    Returns:
        Sphinx's exit status; 1 also when a notebook had to be executed (the English build's
        cache did not hold it), since the two editions would then show different runs.
    """
    if not (HTML_DIR / "index.html").exists():
        raise SystemExit("i18n: build the English edition first: `jupyter-book build .`")
    before = cached_executions()
    overrides = dict(GETTEXT_OVERRIDES, language=LANGUAGE, html_title=TITLE, author=AUTHOR,
                     locale_dirs=[str(LOCALE_DIR.relative_to(ROOT))],
                     nb_execution_cache_path=str(CACHE_DIR))
    status = _build("html", ZH_HTML_DIR, ROOT / "_build" / ".doctrees-zh_CN", overrides, strict)
    executed = cached_executions() - before
    if executed:
        print(f"i18n: the Chinese build executed {executed} notebooks the English build had "
              "not: the editions would show different runs; rebuild both")
        return 1
    return status


def numbered(page: str) -> list:
    """A page's catalogue entries (header left out), in file order: entry N is `=== N`."""
    return [entry for entry in read_catalogue(CATALOGUES / f"{page}.po") if entry.id]


def todo(page: str) -> str:
    """A page's entries without a current translation, as `=== N` blocks of raw English.

    The same blocks with Chinese under each header are what `apply` reads: raw text, no
    escaping (math keeps its single backslashes).
    """
    blocks = [f"=== {number}\n{entry.id}\n" for number, entry in enumerate(numbered(page))
              if entry.fuzzy or not entry.string]
    return "\n".join(blocks)


def review(page: str) -> str:
    """Every entry of a page as `=== N` blocks: the English, then `--- zh_CN` and the Chinese.

    For a reviewer: put corrected Chinese under the same `=== N` headers (without the English)
    and `apply` them.
    """
    return "\n".join(f"=== {number}\n{entry.id}\n--- {LANGUAGE}\n{entry.string}\n"
                     for number, entry in enumerate(numbered(page)))


def parse_blocks(text: str) -> dict[int, str]:
    r"""`=== N` blocks to {N: text}; a block's text ends at the next header (trimmed).

    Example:
        >>> parse_blocks("=== 3\n第一段\n\n=== 7\n$x$ 与 $y$\n")
        {3: '第一段', 7: '$x$ 与 $y$'}
    """
    parts = re.split(r"^=== (\d+)[ \t]*$", text, flags=re.M)
    return {int(number): body.strip("\n") for number, body in zip(parts[1::2], parts[2::2])}


def apply(page: str, blocks: dict[int, str]) -> list[str]:
    """Write translations ({entry number: Chinese}) into a page's catalogue, fuzzy cleared.

    Returns:
        One line per entry whose markup the translation lost (written all the same, so the
        fix is an edit of the block and a second `apply`).
    """
    path = CATALOGUES / f"{page}.po"
    catalogue = read_catalogue(path)
    entries = [entry for entry in catalogue if entry.id]
    bad = [number for number in blocks if not 0 <= number < len(entries)]
    if bad:
        raise SystemExit(f"i18n: {page} has entries 0..{len(entries) - 1}, got === {bad[0]}")
    warnings = []
    for number, text in blocks.items():
        entry = entries[number]
        if not text.strip():
            continue
        entry.string = text
        entry.flags.discard("fuzzy")
        entry.previous_id = []
        if lost := broken_markup(entry.id, text):
            warnings.append(f"=== {number}: lost {lost}")
    write_catalogue(path, catalogue)
    return warnings


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("extract", help="refresh the .po catalogues from the English text")
    sub.add_parser("check", help="fail on untranslated, fuzzy or broken entries")
    build_cmd = sub.add_parser("build", help="build _build/html/zh_CN/ after the English build")
    build_cmd.add_argument("--not-strict", action="store_true", help="warnings are not errors")
    todo_cmd = sub.add_parser("todo", help="print a page's open entries as === N blocks")
    todo_cmd.add_argument("page", help="e.g. notebooks/05_pruning_in_fl or book/faq")
    review_cmd = sub.add_parser("review", help="print a page's entries, English and Chinese")
    review_cmd.add_argument("page")
    apply_cmd = sub.add_parser("apply", help="write === N blocks of Chinese into a page's .po")
    apply_cmd.add_argument("page")
    apply_cmd.add_argument("blocks_file", type=pathlib.Path)
    args = parser.parse_args(argv)
    if args.command == "extract":
        extract()
    elif args.command == "check":
        return check()
    elif args.command == "build":
        return build(strict=not args.not_strict)
    elif args.command == "todo":
        print(todo(args.page), end="")
    elif args.command == "review":
        print(review(args.page), end="")
    else:
        blocks = parse_blocks(args.blocks_file.read_text(encoding="utf-8"))
        warnings = apply(args.page, blocks)
        for line in warnings:
            print(f"i18n: {args.page} {line}")
        print(f"i18n: {len(blocks)} entries written to {args.page}, "
              f"{len(warnings)} with lost markup")
        return 1 if warnings else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
