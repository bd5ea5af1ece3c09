"""Isolation for tests that build Dagster instances one after another in one process."""

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_defs_state_storage() -> Iterator[None]:
    """Scope Dagster's definitions-state storage (a ContextVar) to one test.

    Dagster 1.13 sets it when a test instance evaluates a sensor and never resets it, so a later
    test that builds a repository finds a storage whose instance was already disposed
    ("Attempted to resolve undefined DagsterInstance weakref"). Resetting the variable after each
    test keeps tests independent of their order.
    """
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
