"""The server settings a shared deployment relies on, read from .streamlit/config.toml as Streamlit reads it, and
the same settings wherever `lstm-viz app` starts (lstm_viz/serve passes them as flags)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from streamlit.web import cli as streamlit_cli

from lstm_viz import serve

CHECKOUT_CONFIG = Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml"
CONFIG = tomllib.loads(CHECKOUT_CONFIG.read_text())


def test_usage_statistics_are_off():
    assert CONFIG["browser"]["gatherUsageStats"] is False


def test_xsrf_protection_is_on():
    assert CONFIG["server"]["enableXsrfProtection"] is True


def test_uploads_are_bounded_well_below_streamlits_default():
    assert 1 <= CONFIG["server"]["maxUploadSize"] <= 50  # megabytes; Streamlit's default is 200


def test_users_never_see_a_traceback():
    assert CONFIG["client"]["showErrorDetails"] in ("type", "none")


def test_the_server_never_opens_a_browser_itself():
    assert CONFIG["server"]["headless"] is True  # the README says so; on a server there is nobody to see it


def test_the_checkout_and_the_package_share_one_file():
    assert CHECKOUT_CONFIG.is_symlink()
    assert CHECKOUT_CONFIG.resolve() == serve.OPTIONS.resolve()


def test_lstm_viz_app_gives_streamlit_every_option_and_the_users_flags_win():
    """`streamlit run`'s own parser reads lstm-viz app's flags back as the file's values; flags after them win."""
    def parsed(*extra: str) -> dict:
        return streamlit_cli.main_run.make_context("run", [str(serve.SCRIPT), *serve.flags(), *extra]).params

    options = serve.options()
    assert options["server.headless"] is True
    assert options["server.maxUploadSize"] == CONFIG["server"]["maxUploadSize"]
    got = parsed()
    assert {name: got[name.replace(".", "_")] for name in options} == options
    changed = parsed("--server.headless", "false", "--server.port", "8600")
    assert changed["server_headless"] is False
    assert changed["server_port"] == 8600
