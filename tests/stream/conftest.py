"""Shared by the live tests of this directory."""

from __future__ import annotations

import pytest
from fairwatch.testing.live import LiveSetup


@pytest.fixture(autouse=True)
def delete_what_the_test_made():
    """After each test, the topics, group and database of every LiveSetup it made and left listed."""
    yield
    while LiveSetup.created:
        problems = LiveSetup.created.pop().cleanup()
        if problems:
            print("live test cleanup incomplete: " + "; ".join(problems))
