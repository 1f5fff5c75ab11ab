"""The site configuration: offline MathJax, repository-driven buttons, tidy scripts."""

import copy
import hashlib
import importlib.util
import pathlib
import re

import pytest
import yaml
from jupyter_book.config import get_final_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
MATHJAX = ROOT / "book" / "_static" / "mathjax"
REPO = "https://github.com/example-owner/prunefl-course"


def load_extension():
    spec = importlib.util.spec_from_file_location(
        "course_site", ROOT / "book" / "_ext" / "course_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


course_site = load_extension()


def final_theme_options(user_yaml):
    """html_theme_options after jupyter-book and then our config-inited hook."""
    sphinx_config, _ = get_final_config(user_yaml=user_yaml, sourcedir=ROOT, validate=False,
                                        cli_config={"latex_individualpages": False})
    return course_site.apply_repository_setting(sphinx_config["html_theme_options"]), \
        sphinx_config


def test_mathjax_is_served_from_the_site():
    sphinx = CONFIG["sphinx"]["config"]
    assert not re.match(r"https?://", sphinx["mathjax_path"]), "MathJax must not come from a CDN"
    static = [ROOT / p for p in sphinx["html_static_path"]]
    script = [s / sphinx["mathjax_path"] for s in static if (s / sphinx["mathjax_path"]).is_file()]
    assert script, f"{sphinx['mathjax_path']} is in no html_static_path folder"
    text = script[0].read_text(encoding="utf-8")
    assert "3.2.2" in text, "the vendored MathJax is not the pinned 3.2.2"


def test_mathjax_fonts_and_source_are_vendored():
    fonts = sorted((MATHJAX / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) == 23, [f.name for f in fonts]
    source = (MATHJAX / "SOURCE.txt").read_text(encoding="utf-8")
    digest = hashlib.sha256((MATHJAX / "tex-chtml-full.js").read_bytes()).hexdigest()
    assert digest in source, "SOURCE.txt must record the sha256 of tex-chtml-full.js"
    assert (MATHJAX / "LICENSE").is_file()


def test_no_thebe_and_no_widget_cdn():
    assert CONFIG["launch_buttons"]["thebe"] is False
    assert CONFIG["sphinx"]["config"]["nb_ipywidgets_js"] == {}


def test_repository_url_is_empty_so_buttons_are_off():
    assert CONFIG["repository"]["url"] == ""
    opts, _ = final_theme_options(copy.deepcopy(CONFIG))
    assert "repository_url" not in opts
    assert opts["use_repository_button"] is False
    assert opts["launch_buttons"]["binderhub_url"] == ""
    assert opts["launch_buttons"]["colab_url"] == ""


def test_setting_the_repository_url_switches_the_buttons_on():
    user = copy.deepcopy(CONFIG)
    user["repository"]["url"] = REPO
    opts, sphinx_config = final_theme_options(user)
    assert opts["repository_url"] == REPO
    assert opts["repository_branch"] == "main"
    assert opts["use_repository_button"] is True
    assert opts["launch_buttons"]["binderhub_url"] == course_site.BINDERHUB_URL
    assert opts["launch_buttons"]["colab_url"] == course_site.COLAB_URL
    assert opts["launch_buttons"]["thebe"] is False
    assert "course_site" in sphinx_config["extensions"]


@pytest.mark.parametrize("url", ["github.com/o/r", "https://github.com/only-owner",
                                 "ftp://github.com/o/r"])
def test_a_malformed_repository_url_is_refused(url):
    with pytest.raises(ValueError, match="repository.url must be"):
        course_site.apply_repository_setting({"repository_url": url})


def test_tidy_scripts_drops_duplicates_and_thebe_when_off():
    class Js(str):
        def __new__(cls, filename, body=""):
            obj = super().__new__(cls, filename or "")
            obj.filename, obj.attributes = filename, {"body": body} if body else {}
            return obj

    thebe_conf = Js(None, 'const THEBE_JS_URL = "x"')
    scripts = [Js("a.js"), thebe_conf, Js("a.js"), thebe_conf, Js("_static/sphinx-thebe.js")]
    assert course_site.tidy_scripts(scripts, thebe=False) == [scripts[0]]
    assert course_site.tidy_scripts(scripts, thebe=True) == [scripts[0], thebe_conf, scripts[4]]


def test_the_publishing_workflow_runs_ci_and_deploys_the_built_site():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text("utf-8"))
    build = workflow["jobs"]["build"]
    runs = [step.get("run") for step in build["steps"]]
    assert "bash .ci/run" in runs, "the workflow must build exactly as .ci/run does"
    uploads = [s for s in build["steps"] if "upload-pages-artifact" in s.get("uses", "")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert any("deploy-pages" in s.get("uses", "") for s in deploy["steps"])


MYST_NOTEBOOK = """---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

# Page

```{code-cell} ipython3
print(6 * 7)
```
"""


@pytest.mark.slow  # a Jupyter Book build with a kernel
def test_the_book_build_runs_notebooks_in_a_subfolder_over_ipc(tmp_path):
    """A tiny book with the course's _config.yml: the kernel (cwd sub/) and the build
    (another cwd) must find the same IPC sockets, and the TCP warning must be gone.
    (With relative socket names the MyST notebook's kernel never answers.)"""
    import subprocess
    import sys

    import nbformat

    config = copy.deepcopy(CONFIG)
    config["sphinx"]["local_extensions"] = {"course_site": str(ROOT / "book" / "_ext")}
    config["sphinx"]["config"]["html_static_path"] = [str(ROOT / "book" / "_static")]
    config["bibtex_bibfiles"] = ["refs.bib"]
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "refs.bib").write_text("", encoding="utf-8")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: sub/nb\n  - file: sub/page\n",
        encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "page.md").write_text(MYST_NOTEBOOK, encoding="utf-8")
    (tmp_path / "intro.md").write_text("# Intro\n\nMath $x^2$.\n", encoding="utf-8")
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Sub\n"),
               nbformat.v4.new_code_cell("print(6 * 7)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    nbformat.write(nb, tmp_path / "sub" / "nb.ipynb")
    jb = pathlib.Path(sys.executable).with_name("jupyter-book")
    run = subprocess.run([str(jb), "build", str(tmp_path), "-W", "-n", "--keep-going"],
                         capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "without encryption" not in log
    site = tmp_path / "_build" / "html"
    for page in ("nb", "page"):
        assert "42" in (site / "sub" / f"{page}.html").read_text(encoding="utf-8"), page
    intro = (site / "intro.html").read_text(encoding="utf-8")
    assert 'src="_static/mathjax/tex-chtml-full.js' in intro and "THEBE_JS_URL" not in intro
