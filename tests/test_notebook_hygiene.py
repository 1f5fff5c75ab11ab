"""Hygiene of the chapters: no stored outputs, python3 kernel, no pip cells, all in the toc."""

import json
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


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


def test_every_toc_entry_exists():
    for entry in toc_files():
        candidates = [ROOT / f"{entry}{suffix}" for suffix in ("", ".md", ".ipynb")]
        assert any(c.is_file() for c in candidates), f"_toc.yml lists {entry!r}, no such file"


def test_every_notebook_is_in_the_toc():
    listed = {pathlib.Path(entry).with_suffix("").as_posix() for entry in toc_files()}
    for nb in NOTEBOOKS:
        name = nb.relative_to(ROOT).with_suffix("").as_posix()
        assert name in listed, f"{name}.ipynb is not listed in _toc.yml"


def test_notebooks_are_named_nn_name():
    for nb in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", nb.name), nb.name


if not NOTEBOOKS:  # keep one visible record that there is nothing to check yet
    NOTEBOOKS_OR_NONE = [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks yet"))]
else:
    NOTEBOOKS_OR_NONE = NOTEBOOKS


@pytest.mark.parametrize("nb", NOTEBOOKS_OR_NONE, ids=lambda p: p.name if p else "none")
def test_notebook_hygiene(nb):
    data = json.loads(nb.read_text(encoding="utf-8"))
    assert data["metadata"]["kernelspec"]["name"] == "python3", f"{nb.name}: kernel is not python3"
    for i, cell in enumerate(data["cells"]):
        source = "".join(cell.get("source", ""))
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{nb.name} cell {i}: stored outputs"
            assert cell.get("execution_count") is None, f"{nb.name} cell {i}: execution count"
        assert not re.search(r"^\s*[!%]\s*pip\b", source, re.M), f"{nb.name} cell {i}: pip cell"


@pytest.mark.parametrize("nb", NOTEBOOKS_OR_NONE, ids=lambda p: p.name if p else "none")
def test_first_code_cell_seeds(nb):
    data = json.loads(nb.read_text(encoding="utf-8"))
    code = [c for c in data["cells"] if c["cell_type"] == "code"]
    assert code, f"{nb.name} has no code cell"
    first = "".join(code[0]["source"])
    assert "seed" in first.lower(), f"{nb.name}: the first code cell must seed the generators"
