"""The full scenario corpus runs only when asked for (``-m scenarios``, ``make scenarios``)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests marked ``scenarios`` unless the marker expression names them.

    A default ``-m "not scenarios"`` in addopts would be replaced by any other ``-m`` (as
    ``make test-fast`` passes one), so the choice is made here instead.
    """
    if "scenarios" in (config.option.markexpr or ""):
        return
    keep = [item for item in items if item.get_closest_marker("scenarios") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
