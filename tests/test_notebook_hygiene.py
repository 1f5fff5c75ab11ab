"""Hygiene of the chapters as committed: no stored outputs, python3 kernel, no pip cells, in the toc.

The rules apply to the version of each notebook that git holds (the index, which equals HEAD in a
fresh clone), not to the working copy: a learner who runs a chapter and saves it, outputs and all,
still passes the test command. Outside a git checkout (or without git) the working files are read.
"""

import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _git(root, *args):
    """stdout of `git -C root args...`, or None when git or the repository is unavailable."""
    if shutil.which("git") is None:
        return None
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    return result.stdout if result.returncode == 0 else None


def chapter_paths(root=ROOT):
    """The chapters' paths relative to `root`: those git tracks, else every notebooks/*.ipynb."""
    tracked = _git(root, "ls-files", "-z", "--", "notebooks/*.ipynb")
    if tracked is None:
        return sorted(p.relative_to(root).as_posix() for p in (root / "notebooks").glob("*.ipynb"))
    names = [name for name in tracked.decode("utf-8").split("\0") if name]
    return sorted(name for name in names if "/" not in name.removeprefix("notebooks/"))


def committed_text(relative_path, root=ROOT):
    """Text of the staged (committed) version of a file, or of the working file outside git."""
    staged = _git(root, "show", f":{relative_path}")
    if staged is not None:
        return staged.decode("utf-8")
    return (root / relative_path).read_text(encoding="utf-8")


NOTEBOOKS = chapter_paths()


def toc_files():
    """Every `file:` entry of _toc.yml (and the root), as paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    found = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def hygiene_problems(text, name):
    """List of hygiene violations of one notebook's JSON text (empty when it is clean)."""
    data = json.loads(text)
    problems = []
    if data["metadata"].get("kernelspec", {}).get("name") != "python3":
        problems.append(f"{name}: kernel is not python3")
    for i, cell in enumerate(data["cells"]):
        source = "".join(cell.get("source", ""))
        if cell["cell_type"] == "code":
            if cell.get("outputs"):
                problems.append(f"{name} cell {i}: stored outputs")
            if cell.get("execution_count") is not None:
                problems.append(f"{name} cell {i}: execution count")
        if re.search(r"^\s*[!%]\s*pip\b", source, re.M):
            problems.append(f"{name} cell {i}: pip cell")
        if cell["cell_type"] == "markdown" and myst_comment_lines(source):
            problems.append(f"{name} cell {i}: {MYST_COMMENT}")
        if cell["cell_type"] == "markdown" and detached_options(source):
            problems.append(f"{name} cell {i}: {DETACHED_OPTION}")
        if cell["cell_type"] == "code" and figures_glued_from_another_cell(source):
            problems.append(f"{name} cell {i}: {SHOWN_TWICE}")
    return problems


MYST_COMMENT = "a Markdown line starts with % (a MyST comment: its text vanishes from the page)"
DETACHED_OPTION = "a directive option after a blank line (it shows as text, not as an option)"


SHOWN_TWICE = ("glues a figure drawn in an earlier cell (that cell already showed it: the page "
               "shows it twice)")


def figures_glued_from_another_cell(code):
    """Figure variables glued (`glue("fig_x", fig, ...)`) by a cell that did not create them.

    The cell that draws a figure displays it when it ends unless it is closed there, so the
    figure must be glued and closed in the cell that makes it.
    """
    found = []
    for match in re.finditer(r'glue\("fig\w*",\s*(\w+)', code):
        made = re.search(rf"\b{match.group(1)}\b[\w\s,()]*=", code[:match.start()])
        if not made:
            found.append(match.group(1))
    return found


def detached_options(markdown):
    """Directive option lines (`:class: warning`) separated from their directive by a blank line."""
    lines = markdown.splitlines()
    return [lines[i] for i in range(2, len(lines))
            if re.match(r"\s*:[a-z-]+:(\s|$)", lines[i]) and not lines[i - 1].strip()
            and lines[i - 2].lstrip().startswith(("```{", ":::{"))]


def myst_comment_lines(markdown):
    """Lines outside code fences that MyST reads as comments (they start with `%`).

    Wrapped prose such as "accuracy (in\n%, ...)" loses the whole line this way, in both
    editions; move the `%` to the line before.
    """
    found, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and line.lstrip().startswith("%"):
            found.append(line)
    return found


@pytest.mark.parametrize("page", sorted((ROOT / "book").glob("*.md")), ids=lambda p: p.name)
def test_no_prose_line_of_a_book_page_vanishes_or_shows_as_markup(page):
    text = page.read_text(encoding="utf-8")
    assert not myst_comment_lines(text) and not detached_options(text)


def test_every_toc_entry_exists():
    for entry in toc_files():
        candidates = [ROOT / f"{entry}{suffix}" for suffix in ("", ".md", ".ipynb")]
        assert any(c.is_file() for c in candidates), f"_toc.yml lists {entry!r}, no such file"


def test_every_notebook_is_in_the_toc():
    listed = {pathlib.Path(entry).with_suffix("").as_posix() for entry in toc_files()}
    for nb in NOTEBOOKS:
        name = pathlib.PurePosixPath(nb).with_suffix("").as_posix()
        assert name in listed, f"{name}.ipynb is not listed in _toc.yml"


def test_notebooks_are_named_nn_name():
    for nb in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", pathlib.PurePosixPath(nb).name), nb


if not NOTEBOOKS:  # keep one visible record that there is nothing to check yet
    NOTEBOOKS_OR_NONE = [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks yet"))]
else:
    NOTEBOOKS_OR_NONE = NOTEBOOKS


def _name(nb):
    return pathlib.PurePosixPath(nb).name if nb else "none"


@pytest.mark.parametrize("nb", NOTEBOOKS_OR_NONE, ids=_name)
def test_notebook_hygiene(nb):
    problems = hygiene_problems(committed_text(nb), _name(nb))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("nb", NOTEBOOKS_OR_NONE, ids=_name)
def test_first_code_cell_seeds(nb):
    data = json.loads(committed_text(nb))
    code = [c for c in data["cells"] if c["cell_type"] == "code"]
    assert code, f"{nb} has no code cell"
    first = "".join(code[0]["source"])
    assert "seed" in first.lower(), f"{nb}: the first code cell must seed the generators"


# --- the committed-version rule itself -------------------------------------------------------

CLEAN = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                    "source": "SEED = 0"}],
         "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}},
         "nbformat": 4, "nbformat_minor": 5}
RUN = {**CLEAN, "cells": [{**CLEAN["cells"][0], "execution_count": 1,
                           "outputs": [{"output_type": "stream", "name": "stdout",
                                        "text": "saved by a learner\n"}]}]}


def _write_chapter(root, content):
    path = root / "notebooks" / "01_x.ipynb"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")


@pytest.fixture
def repository(tmp_path):
    """A git repository holding one clean, committed chapter."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    _write_chapter(tmp_path, CLEAN)
    env = ["-c", "user.name=test", "-c", "user.email=test@example.org"]
    for args in (["init", "-q"], ["add", "notebooks/01_x.ipynb"], [*env, "commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    return tmp_path


def test_a_learners_saved_outputs_do_not_fail_the_check(repository):
    _write_chapter(repository, RUN)  # run and saved in the working copy, not committed
    assert chapter_paths(repository) == ["notebooks/01_x.ipynb"]
    assert hygiene_problems(committed_text("notebooks/01_x.ipynb", repository), "01_x") == []


def test_outputs_staged_for_a_commit_fail_the_check(repository):
    _write_chapter(repository, RUN)
    subprocess.run(["git", "-C", str(repository), "add", "notebooks/01_x.ipynb"], check=True)
    problems = hygiene_problems(committed_text("notebooks/01_x.ipynb", repository), "01_x")
    assert problems == ["01_x cell 0: stored outputs", "01_x cell 0: execution count"]


def test_an_untracked_scratch_notebook_is_not_a_chapter(repository):
    (repository / "notebooks" / "Untitled.ipynb").write_text(json.dumps(RUN), encoding="utf-8")
    assert chapter_paths(repository) == ["notebooks/01_x.ipynb"]


def test_outside_git_the_working_files_are_checked(tmp_path):
    _write_chapter(tmp_path, RUN)
    assert chapter_paths(tmp_path) == ["notebooks/01_x.ipynb"]
    problems = hygiene_problems(committed_text("notebooks/01_x.ipynb", tmp_path), "01_x")
    assert "01_x cell 0: stored outputs" in problems


@pytest.mark.parametrize("edit, problem", [
    (lambda nb: nb["metadata"]["kernelspec"].update(name="python2"), "01_x: kernel is not python3"),
    (lambda nb: nb["cells"][0].update(source="!pip install numpy"), "01_x cell 0: pip cell"),
    (lambda nb: nb["cells"][0].update(source="%pip install numpy"), "01_x cell 0: pip cell"),
    (lambda nb: nb["cells"][0].update(cell_type="markdown", execution_count=None,
                                      source="accuracy (in\n%, steadier)"),
     f"01_x cell 0: {MYST_COMMENT}"),
    (lambda nb: nb["cells"][0].update(cell_type="markdown", execution_count=None,
                                      source="```{admonition} Pitfalls\n\n:class: warning\n```"),
     f"01_x cell 0: {DETACHED_OPTION}"),
    (lambda nb: nb["cells"][0].update(source='glue("fig_x", fig, display=False)'),
     f"01_x cell 0: {SHOWN_TWICE}"),
])
def test_each_hygiene_rule_fires(edit, problem):
    notebook = json.loads(json.dumps(CLEAN))
    edit(notebook)
    assert hygiene_problems(json.dumps(notebook), "01_x") == [problem]
