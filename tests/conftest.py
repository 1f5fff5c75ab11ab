"""Shared test configuration: every chapter run through nbval carries the `slow` marker.

``pytest -m "not slow"`` is the inner loop (unit tests and doctests); ``pytest`` runs everything.
Slow tests in the test modules carry ``@pytest.mark.slow`` (or a module-level ``pytestmark``);
the notebooks cannot carry a decorator, so they are marked here, by file type.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    """Mark every item collected from a ``.ipynb`` file (nbval's cells) as slow."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
