"""The Chinese edition's tools: markup kept, catalogue gate, todo/apply round trip, page links."""

from __future__ import annotations

import pathlib
import sys

import pytest
from babel.messages import pofile
from babel.messages.catalog import Catalog

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))

import course_site  # noqa: E402
import i18n  # noqa: E402


@pytest.mark.parametrize("english, chinese, lost", [
    ("{glue:text}`acc:.1f` %", "{glue:text}`acc:.1f` %", []),
    ("{glue:text}`verdict`", "{glue:text}`verdict_zh`", []),
    ("{glue:text}`gap:.1f`", "{glue:text}`gap_zh:.1f`", []),
    ("{glue:text}`gap:.1f`", "{glue:text}`gap_zh:.2f`", ["{glue:text}`gap:.1f`"]),
    ("{glue:text}`acc`", "{glue:text}`other_zh`", ["{glue:text}`acc`"]),
    ("{cite:p}`mcmahan2017fedavg`", "{cite:t}`mcmahan2017fedavg`",
     ["{cite:p}`mcmahan2017fedavg`"]),
    ("$\\sum_k n_k w_k$", "$\\sum_k n_k w_k$", []),
    ("$\\sum_k n_k w_k$", "$\\sum_k w_k$", ["$\\sum_k n_k w_k$"]),
    ("$$\nf(w)\n$$", "$$\nf(w)\n$$", []),
    ("see [chapter 5](05_pruning_in_fl.ipynb)", "见[第 5 章](05_pruning_in_fl.ipynb)", []),
    ("see [chapter 5](05_pruning_in_fl.ipynb)", "见[第 5 章](05.ipynb)",
     ["(05_pruning_in_fl.ipynb)"]),
    ("{doc}`../notebooks/x` and {doc}`../notebooks/x`", "{doc}`../notebooks/x`",
     ["{doc}`../notebooks/x`"]),
])
def test_broken_markup_finds_each_lost_piece(english, chinese, lost):
    assert i18n.broken_markup(english, chinese) == lost


def test_parse_blocks_keeps_backslashes_and_inner_lines():
    text = "=== 0\n第一行\n第二行 $\\alpha$\n\n=== 12\n最后\n"
    assert i18n.parse_blocks(text) == {0: "第一行\n第二行 $\\alpha$", 12: "最后"}


@pytest.fixture
def catalogues(tmp_path, monkeypatch):
    """A catalogue folder with one page of three English entries, one translated."""
    folder = tmp_path / "LC_MESSAGES"
    (folder / "book").mkdir(parents=True)
    catalogue = Catalog(locale="zh_CN")
    catalogue.add("Round", "通信轮次")
    catalogue.add("Accuracy {glue:text}`acc:.1f` %")
    catalogue.add("Sparsity $s$")
    with (folder / "book" / "page.po").open("wb") as handle:
        pofile.write_po(handle, catalogue)
    monkeypatch.setattr(i18n, "CATALOGUES", folder)
    return folder


def test_todo_then_apply_fills_the_open_entries(catalogues):
    assert i18n.todo("book/page") == (
        "=== 1\nAccuracy {glue:text}`acc:.1f` %\n\n=== 2\nSparsity $s$\n")
    warnings = i18n.apply("book/page", {1: "准确率 {glue:text}`acc:.1f` %", 2: "稀疏度 $s$"})
    assert warnings == [] and i18n.todo("book/page") == ""


def test_apply_reports_lost_markup_and_refuses_unknown_numbers(catalogues):
    assert i18n.apply("book/page", {2: "稀疏度 s"}) == ["=== 2: lost ['$s$']"]
    with pytest.raises(SystemExit, match="entries 0..2, got === 7"):
        i18n.apply("book/page", {7: "多余"})


def _template(folder: pathlib.Path, *msgids: str) -> pathlib.Path:
    catalogue = Catalog()
    for msgid in msgids:
        catalogue.add(msgid)
    path = folder / "page.pot"
    with path.open("wb") as handle:
        pofile.write_po(handle, catalogue)
    return path


def test_the_gate_names_untranslated_fuzzy_and_broken_entries(catalogues, tmp_path):
    po = catalogues / "book" / "page.po"
    i18n.apply("book/page", {2: "稀疏度 s"})  # loses its math
    catalogue = i18n.read_catalogue(po)
    catalogue.get("Round").flags.add("fuzzy")
    with po.open("wb") as handle:
        pofile.write_po(handle, catalogue)
    pot = _template(tmp_path, "Round", "Accuracy {glue:text}`acc:.1f` %", "Sparsity $s$")
    problems = i18n.problems_in(pot, po)
    assert [p.split("' ")[-1].split(" (")[0] for p in problems] == [
        "fuzzy", "untranslated", "lost its markup ['$s$']"]


def test_the_gate_passes_a_complete_catalogue_and_fails_a_new_english_entry(catalogues,
                                                                              tmp_path):
    po = catalogues / "book" / "page.po"
    i18n.apply("book/page", {1: "准确率 {glue:text}`acc:.1f` %", 2: "稀疏度 $s$"})
    pot = _template(tmp_path, "Round", "Accuracy {glue:text}`acc:.1f` %", "Sparsity $s$")
    assert i18n.problems_in(pot, po) == []
    pot = _template(tmp_path, "Round", "A new English paragraph.")
    assert i18n.problems_in(pot, po) == ["book/page: 'A new English paragraph.' untranslated"]


@pytest.mark.parametrize("page, language, link", [
    ("book/intro", "en", ("../zh_CN/book/intro.html", "zh-CN")),
    ("book/intro", "zh_CN", ("../../book/intro.html", "en")),
    ("notebooks/05_pruning_in_fl", "zh_CN", ("../../notebooks/05_pruning_in_fl.html", "en")),
    ("index", "en", ("zh_CN/index.html", "zh-CN")),
])
def test_every_page_links_to_its_counterpart(page, language, link):
    assert course_site.counterpart(page, language) == link


def test_every_english_page_has_a_catalogue():
    toc_pages = {p.with_suffix("").relative_to(ROOT).as_posix()
                 for folder in ("book", "notebooks") for p in (ROOT / folder).glob("*.*")
                 if p.suffix in (".md", ".ipynb")}
    catalogues = {p.relative_to(i18n.CATALOGUES).with_suffix("").as_posix()
                  for p in i18n.CATALOGUES.rglob("*.po")}
    assert toc_pages == catalogues


def test_the_execution_cache_digest_follows_the_package(tmp_path):
    package = tmp_path / "prunefl_lite"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    before = course_site.tree_digest([package])
    (package / "a.py").write_text("x = 2\n")
    assert course_site.tree_digest([package]) != before


def test_the_gate_refuses_the_english_key_of_a_glued_phrase(catalogues, tmp_path):
    po = catalogues / "book" / "page.po"
    i18n.apply("book/page", {1: "准确率 {glue:text}`acc:.1f` %", 2: "稀疏度 $s$"})
    pot = _template(tmp_path, "Round", "Accuracy {glue:text}`acc:.1f` %", "Sparsity $s$")
    assert i18n.problems_in(pot, po, {"acc"}) == []
    assert i18n.problems_in(pot, po, {"acc", "acc_zh"}) == [
        "book/page: 'Accuracy {glue:text}`acc:.1f` %' cites the English of ['acc']: use KEY_zh"]


@pytest.mark.parametrize("chinese, refused", [
    ("5. 联邦训练循环中的剪枝", True), ("- 列表", True), ("# 标题", True), ("> 引文", True),
    ("5\\. 联邦训练循环中的剪枝", False), ("5.1 本地剪枝", False), ("4a. 从零实现", False),
    ("2", False)])
def test_the_gate_refuses_a_translation_markdown_would_read_as_another_block(
        catalogues, tmp_path, chinese, refused):
    # a heading's text "5. Pruning" translated "5. 剪枝" is parsed as a list item on its own,
    # and Sphinx silently keeps the English title
    po = catalogues / "book" / "page.po"
    i18n.apply("book/page", {1: "准确率 {glue:text}`acc:.1f` %", 2: "稀疏度 $s$"})
    catalogue = i18n.read_catalogue(po)
    catalogue.get("Round").string = chinese
    with po.open("wb") as handle:
        pofile.write_po(handle, catalogue)
    pot = _template(tmp_path, "Round")
    problems = i18n.problems_in(pot, po)
    assert bool(problems) is refused and all("escape it" in p for p in problems)


def test_a_fuzzy_header_fails_the_gate_and_apply_writes_the_course_header(catalogues, tmp_path):
    po = catalogues / "book" / "page.po"
    pot = _template(tmp_path, "Round")
    assert i18n.problems_in(pot, po) == ["book/page: the catalogue's header is marked fuzzy"]
    i18n.apply("book/page", {})
    catalogue = i18n.read_catalogue(po)
    assert not catalogue.fuzzy and catalogue.project == "prunefl-course"
    assert i18n.problems_in(pot, po) == []
