"""The app's Streamlit settings that keep it off the network and on this machine."""

from __future__ import annotations

import tomllib

from pneumonia.config import REPO_DIR


def test_streamlit_makes_no_network_calls_and_serves_locally():
    config = tomllib.loads((REPO_DIR / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False  # no telemetry
    assert config["browser"]["serverAddress"] == "localhost"  # skips Streamlit's external-IP lookup at start-up
    assert config["server"]["address"] == "localhost"  # uploads are patient images: not exposed on the network
    assert config["server"]["headless"] is True  # no first-run e-mail prompt blocking `make app`
    assert config["client"]["showErrorDetails"] == "none"  # a user never sees a traceback
