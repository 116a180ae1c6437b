"""The web UI in a real browser: Debian's Chromium, headless, driven by Playwright.

Nothing is downloaded: Playwright launches the system's ``chromium``. The test skips, saying why,
only where no Chromium is installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from quant_assets.simulator import Simulator
from quant_assets.webui import DevServer, asset_names, browser_page, show_asset_graph, system_chromium

REPO = Path(__file__).resolve().parents[2]
# Every asset of the graph, listed here so that one missing from the server fails too.
GRAPH = {
    "coin_universe",
    "ohlcv",
    "feature_table",
    "labels",
    "xgboost_model",
    "lightgbm_model",
    "nhits_model",
    "patchtst_model",
    "predictions",
    "model_evaluation",
}


@pytest.fixture
def dev_server(sim: Simulator, tmp_path: Path) -> Iterator[DevServer]:
    if system_chromium() is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium): this test drives the system's")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QT_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "QT_DATA_DIR": str(tmp_path / "data"),
        "QT_BINANCE_FAPI_URL": sim.url,
        "QT_COINGECKO_API_URL": sim.coingecko_url,
        "QT_MAX_SYMBOLS": "3",
    }
    with DevServer(cwd=REPO, env=env, log_path=tmp_path / "dagster_dev.log") as server:
        yield server


def test_the_asset_graph_page_shows_every_asset(dev_server: DevServer) -> None:
    listed = asset_names(dev_server)
    assert set(listed) >= GRAPH, f"the server does not list {GRAPH - set(listed)}"
    assert dev_server.graphql("query { shouldShowNux }")["shouldShowNux"] is True  # a fresh instance

    with browser_page() as page:
        drawn = show_asset_graph(page, dev_server)  # raises naming any asset not drawn

        assert drawn == sorted(listed)
        assert not page.get_by_text("no_such_asset", exact=True).first.is_visible()
        assert not page.get_by_role("button", name="Skip").is_visible()
    # "Skip" was pressed in the page, and the UI told the instance: the dialog will not come back.
    assert dev_server.graphql("query { shouldShowNux }")["shouldShowNux"] is False
