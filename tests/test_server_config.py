"""The server settings a shared deployment relies on, read from .streamlit/config.toml as Streamlit reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
CONFIG = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())


def test_usage_statistics_are_off():
    assert CONFIG["browser"]["gatherUsageStats"] is False


def test_xsrf_protection_is_on():
    assert CONFIG["server"]["enableXsrfProtection"] is True


def test_uploads_are_bounded_well_below_streamlits_default():
    assert 1 <= CONFIG["server"]["maxUploadSize"] <= 50  # megabytes; Streamlit's default is 200


def test_users_never_see_a_traceback():
    assert CONFIG["client"]["showErrorDetails"] in ("type", "none")
