"""Fixtures of the daemon tests."""

import pytest

from tests.daemon.streams import Script
from tests.daemon.streams import messy_script as _messy_script


@pytest.fixture
def messy_script() -> Script:
    return _messy_script()
