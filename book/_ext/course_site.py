"""Sphinx extension of the course site: repository-driven buttons and quiet notebook kernels.

Loaded by jupyter-book through `sphinx: local_extensions` in `_config.yml`. It does two things:

1. `repository.url` in `_config.yml` is the ONE switch that publishes the repository. When it is
   set, the repository button and the Binder and Colab launch buttons are switched on; when it
   is empty, they are all off (jupyter-book alone refuses a button without a URL, and would keep
   launch buttons that point nowhere).
2. Notebooks executed by the build talk to their kernel over IPC (Unix sockets) instead of
   TCP on localhost, so ipykernel does not print "Kernel is running over TCP without
   encryption" into the build log for every chapter.
3. Two editions: every page links to its counterpart in the other language (the English site at
   `_build/html/`, the Chinese one at `_build/html/zh_CN/`, built by `tools/i18n.py build`), and
   the page's `<html lang>` is a BCP 47 tag (`zh-CN`, not Sphinx's `zh_CN`).
4. Glued values resolve in translated paragraphs: Sphinx re-parses a translation as plain MyST,
   without the notebook's glue data, so `{glue:text}` there would find no key; the notebook's
   renderer is kept per page and used when a translation asks.
5. Part captions of the table of contents are translated: sphinx-external-toc inserts its
   toctrees after Sphinx's i18n transform has run, so their captions stayed English.
6. Executions are cached (`execute_notebooks: cache`, so the Chinese edition renders from the
   English build's run); the cache is emptied when `prunefl_lite/` or `requirements.txt` change,
   because jupyter-cache keys an execution on the notebook's text alone.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import uuid
from typing import Any

BINDERHUB_URL = "https://mybinder.org"
COLAB_URL = "https://colab.research.google.com"
LAUNCH_KEYS = ("binderhub_url", "colab_url")
# Unix socket paths are limited to 107 bytes; the kernel appends "-ipc-<port>" to a
# "kernel-<uuid>" name in the runtime dir, so keep TCP when that dir is long.
MAX_RUNTIME_DIR_FOR_IPC = 60
TRANSLATION = "zh_CN"  # the one other edition, in `<html>/zh_CN/`
SWITCH_LABELS = {"en": "中文版", TRANSLATION: "English"}
CACHE_STAMP = "prunefl_lite.sha256"


def apply_repository_setting(theme_options: dict[str, Any]) -> dict[str, Any]:
    """Switch the repository and launch buttons on or off from `repository_url`.

    Args:
        theme_options: `html_theme_options` as jupyter-book builds them from `_config.yml`
            (keys `repository_url`, `launch_buttons`, `use_repository_button`, ...). Changed
            in place.

    Returns:
        The same dict, for chaining.

    Raises:
        ValueError: if `repository_url` is set but is not an http(s) URL of the form
            `https://HOST/OWNER/REPO`.

    Example:
        >>> opts = apply_repository_setting({"repository_url": "", "launch_buttons": {}})
        >>> opts["use_repository_button"], opts["launch_buttons"]["colab_url"]
        (False, '')
        >>> opts = apply_repository_setting({"repository_url": "https://github.com/o/r"})
        >>> opts["use_repository_button"], opts["launch_buttons"]["binderhub_url"]
        (True, 'https://mybinder.org')
    """
    url = (theme_options.get("repository_url") or "").strip()
    launch = dict(theme_options.get("launch_buttons") or {})
    if url:
        parts = url.rstrip("/").split("/")
        if not url.startswith(("https://", "http://")) or len(parts) < 5:
            raise ValueError(f"repository.url must be https://HOST/OWNER/REPO, got {url!r}")
        theme_options["repository_url"] = url.rstrip("/")
        theme_options["use_repository_button"] = True
        launch["binderhub_url"] = launch.get("binderhub_url") or BINDERHUB_URL
        launch["colab_url"] = launch.get("colab_url") or COLAB_URL
    else:
        theme_options.pop("repository_url", None)
        for key in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
            theme_options[key] = False
        for key in LAUNCH_KEYS:
            launch[key] = ""
    theme_options["launch_buttons"] = launch
    return theme_options


TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "_templates")  # book/_templates: language-switch.html
ARTICLE_HEADER_END = ["language-switch.html", "article-header-buttons.html"]


def _on_config_inited(app, config) -> None:
    apply_repository_setting(config.html_theme_options)
    # the language switch goes in every page's header, before the theme's buttons
    config.templates_path = [*config.templates_path, TEMPLATES]
    config.html_theme_options["article_header_end"] = ARTICLE_HEADER_END


def use_ipc_kernels() -> bool:
    """Make the book build start its notebook kernels on the IPC transport.

    myst-nb executes notebooks through jupyter-cache's `single_nb_execution`, which calls
    `nbclient.execute` without a kernel manager; this wraps that call to pass a kernel
    manager whose transport is IPC. Without a kernel manager class from us (an upstream
    rename), the build keeps working on TCP and only the warning comes back.

    Returns:
        True if the IPC kernel manager is in place, False if TCP stays.
    """
    try:
        from jupyter_cache.executors import utils as cache_utils
        from jupyter_client import AsyncKernelManager
        from jupyter_core.paths import jupyter_runtime_dir
        from nbclient import execute as nbclient_execute
        from traitlets import default
    except ImportError:
        return False
    if len(jupyter_runtime_dir()) > MAX_RUNTIME_DIR_FOR_IPC or os.name != "posix":
        return False
    if not hasattr(cache_utils, "executenb"):
        return False

    runtime_dir = jupyter_runtime_dir()

    class IPCKernelManager(AsyncKernelManager):
        """An async kernel manager on the IPC transport, sockets in Jupyter's runtime dir."""

        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            # An absolute path: the kernel runs in the notebook's folder, the client in
            # the book's, so a relative socket name ("kernel-ipc") would differ between them.
            os.makedirs(runtime_dir, exist_ok=True)
            return os.path.join(runtime_dir, f"nb-{uuid.uuid4().hex[:12]}-ipc")

    def execute_over_ipc(nb, cwd=None, km=None, **kwargs):
        if km is None:
            kwargs.setdefault("kernel_manager_class", IPCKernelManager)
        return nbclient_execute(nb, cwd=cwd, km=km, **kwargs)

    cache_utils.executenb = execute_over_ipc
    return True


_NOTEBOOK_RENDERERS: dict[str, Any] = {}  # page name -> its notebook's myst-nb element renderer


def share_glue_with_translations() -> bool:
    """Let `{glue}` roles and directives inside translated paragraphs find the page's glue data.

    myst-nb keeps glue data on the notebook's renderer, stored on the document while it is
    parsed; Sphinx's i18n transform then parses each translated paragraph into a new document
    (as plain MyST), which has no renderer. The page's English text resolves its glue roles
    first, so the lookup records the page's renderer then, and a translated paragraph of the
    same page looks its keys up there.

    Returns:
        True if the lookups are patched, False if myst-nb's internals moved (glue roles in
        translations then warn, and the strict Chinese build fails loudly).
    """
    try:
        from myst_nb.ext.glue import directives, roles, utils
    except ImportError:
        return False
    if getattr(utils.retrieve_glue_data, "course_site", False):
        return True
    original_retrieve = utils.retrieve_glue_data

    def retrieve_glue_data(document, key):
        env = getattr(document.settings, "env", None)
        docname = env.docname if env is not None else None
        if "nb_renderer" in document:  # the notebook itself (its English text) is parsed first
            _NOTEBOOK_RENDERERS[docname] = document["nb_renderer"]
            return original_retrieve(document, key)
        if docname not in _NOTEBOOK_RENDERERS:
            return original_retrieve(document, key)  # raises: no glue data anywhere
        return original_retrieve({"nb_renderer": _NOTEBOOK_RENDERERS[docname]}, key)

    retrieve_glue_data.course_site = True
    for module in (utils, roles, directives):
        module.retrieve_glue_data = retrieve_glue_data
    return True


def _translate_toc_captions(app, doctree) -> None:
    """Translate the captions of the toctrees sphinx-external-toc inserted (after i18n ran)."""
    from sphinx import addnodes
    from sphinx.locale import init as init_locale
    from sphinx.util.i18n import docname_to_domain

    language = app.config.language
    toctrees = [node for node in doctree.findall(addnodes.toctree) if node.get("caption")]
    if not toctrees or not language or language == "en":
        return
    domain = docname_to_domain(app.env.docname, app.config.gettext_compact)
    dirs = [os.path.join(app.srcdir, folder) for folder in app.config.locale_dirs]
    catalog, found = init_locale(dirs, language, domain)
    for node in toctrees if found else []:
        node["caption"] = catalog.gettext(node["caption"])


def tidy_scripts(scripts: list, thebe: bool) -> list:
    """Drop repeated scripts, and sphinx-thebe's scripts when thebe is off.

    sphinx-thebe adds its inline configuration (`const THEBE_JS_URL = ...`) once per read
    pass; a second copy is a console error in every page ("Identifier 'THEBE_JS_URL' has
    already been declared"), and with thebe off neither script does anything.

    Args:
        scripts: the page's `script_files` (Sphinx `_JavaScript` entries or plain strings).
        thebe: whether thebe launch buttons are on.

    Returns:
        The scripts to keep, in their order.

    Example:
        >>> tidy_scripts(["a.js", "a.js", "_static/sphinx-thebe.js"], thebe=False)
        ['a.js']
    """
    kept, seen = [], set()
    for script in scripts:
        filename = getattr(script, "filename", script) or ""
        body = (getattr(script, "attributes", None) or {}).get("body", "")
        key = (filename, body)
        is_thebe = "THEBE_JS_URL" in body or filename.endswith("sphinx-thebe.js")
        if key in seen or (is_thebe and not thebe):
            continue
        seen.add(key)
        kept.append(script)
    return kept


def counterpart(pagename: str, language: str) -> tuple[str, str]:
    """The relative link from a page to the same page in the other edition, and its language.

    Args:
        pagename: Sphinx's page name, e.g. `notebooks/05_pruning_in_fl`.
        language: this page's edition, `"en"` or `"zh_CN"`.

    Returns:
        (href, BCP 47 tag of the target's language).

    Example:
        >>> counterpart("notebooks/05_pruning_in_fl", "en")
        ('../zh_CN/notebooks/05_pruning_in_fl.html', 'zh-CN')
        >>> counterpart("intro", "zh_CN")
        ('../intro.html', 'en')
    """
    up = "../" * pagename.count("/")
    if language == TRANSLATION:
        return f"{up}../{pagename}.html", "en"
    return f"{up}{TRANSLATION}/{pagename}.html", TRANSLATION.replace("_", "-")


def language_switch(pagename: str, language: str) -> str:
    """The link to the page's counterpart, shown in every page's header (language-switch.html).

    Example:
        >>> language_switch("book/faq", "en")
        '<a href="../zh_CN/book/faq.html" hreflang="zh-CN" lang="zh-CN">中文版</a>'
    """
    href, lang = counterpart(pagename, language)
    return f'<a href="{href}" hreflang="{lang}" lang="{lang}">{SWITCH_LABELS[language]}</a>'


def _on_page_context(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        thebe = bool(app.config.html_theme_options.get("launch_buttons", {}).get("thebe"))
        context["script_files"] = tidy_scripts(context["script_files"], thebe)


def _on_page_language(app, pagename, templatename, context, doctree) -> None:
    # before the theme (priority 500) drops header templates that render empty
    language = app.config.language or "en"
    context["language"] = language.replace("_", "-")  # the theme writes it into <html lang>
    if language in SWITCH_LABELS:  # every page, genindex and search too
        context["language_switch"] = language_switch(pagename, language)


def tree_digest(paths: list[pathlib.Path]) -> str:
    """A SHA-256 over the names and bytes of the `.py` files under `paths` (files or dirs).

    A path that does not exist counts as empty (a book without the package, as in tests).
    """
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for file in files:
            name = file.relative_to(path.parent).as_posix()  # the same in every clone
            digest.update(name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def execution_digest(root: pathlib.Path) -> str:
    """What the cached executions depend on besides the notebooks: the package and the pins."""
    return tree_digest([root / "prunefl_lite", root / "requirements.txt"])


def _on_builder_inited(app) -> None:
    if app.config.nb_execution_mode != "cache":
        return
    root = pathlib.Path(app.srcdir)
    # where myst-nb puts it: the setting, else beside the output folder (_build/.jupyter_cache)
    cache = pathlib.Path(app.config.nb_execution_cache_path
                         or pathlib.Path(app.outdir).parent / ".jupyter_cache").resolve()
    stamp = cache / CACHE_STAMP
    digest = execution_digest(root)
    if stamp.exists() and stamp.read_text() == digest:
        return
    shutil.rmtree(cache, ignore_errors=True)  # jupyter-cache recreates it
    cache.mkdir(parents=True)
    stamp.write_text(digest)


def setup(app):
    """Register the extension with Sphinx."""
    app.connect("config-inited", _on_config_inited)
    app.connect("html-page-context", _on_page_context, priority=900)
    app.connect("html-page-context", _on_page_language, priority=100)
    app.connect("builder-inited", _on_builder_inited, priority=100)
    app.connect("doctree-read", _translate_toc_captions)
    use_ipc_kernels()
    share_glue_with_translations()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
