"""Shared test configuration: every chapter run through nbval carries the `slow` marker.

``pytest -m "not slow"`` is the inner loop (unit tests and doctests); ``pytest`` runs everything.
Slow tests in the test modules carry ``@pytest.mark.slow`` (or a module-level ``pytestmark``);
the notebooks cannot carry a decorator, so they are marked here, by file type.
"""

import os

import pytest

# .ci/run sets this: the strict book build that follows the tests executes every chapter with
# `nb_execution_raise_on_error` and the same 180 s cell timeout, so nbval would run every
# chapter a second time in the same CI run. Without the variable, `pytest` runs them all.
_BUILD_RUNS_CHAPTERS = os.environ.get("PFL_CHAPTERS_RUN_BY_BUILD") == "1"


def pytest_collection_modifyitems(config, items):
    """Mark every item collected from a ``.ipynb`` file (nbval's cells) as slow."""
    skip = pytest.mark.skip(reason="PFL_CHAPTERS_RUN_BY_BUILD=1: the strict book build that "
                            ".ci/run runs next executes this chapter")
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
            if _BUILD_RUNS_CHAPTERS:
                item.add_marker(skip)
