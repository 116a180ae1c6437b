"""``make screenshots``: the README's pictures of the web UI, made from this code.

1. A small demo materialization (``quant-assets demo --symbols 3 --days 10``: universe, candles,
   labels, features, the four models, predictions and their evaluation, against the simulator
   with its planted signal) into a temporary ``DAGSTER_HOME`` and data directory.
2. ``dagster dev`` (webserver and daemon) on that instance and a fresh simulator, until its
   sensors have settled.
3. Debian's Chromium, headless, driven by Playwright (nothing is downloaded): the asset graph, the
   ``ohlcv`` partitions with one symbol-day selected, the ``ohlcv`` checks, the run that trained a
   model, that model's metadata and its decile plot, saved as PNGs in ``docs/screenshots/``.

Every wait polls for something on the page or in the API, bounded by a timeout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quant_assets.settings import lookback_start
from quant_assets.simulator import Simulator
from quant_assets.webui import (
    DevServer,
    WebUIError,
    browser_page,
    open_ui,
    show_asset_graph,
    wait_for_quiet,
)

REPO = Path(__file__).resolve().parents[1]
MODEL_PREFERENCE = ("xgboost_model", "lightgbm_model", "nhits_model", "patchtst_model")
PAGE_TIMEOUT_S = 120.0
QUIET_TIMEOUT_S = 1200.0

LATEST_MATERIALIZATION = """
query LatestMaterialization($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(limit: 1) { runId partition } }
  }
}
"""


def latest_materialization(server: DevServer, asset: str) -> dict[str, Any] | None:
    """The newest materialization event of `asset` ({runId, partition}), or None."""
    found = server.graphql(LATEST_MATERIALIZATION, {"key": {"path": [asset]}})["assetOrError"]
    if found["__typename"] != "Asset":
        return None
    events = found["assetMaterializations"]
    return events[0] if events else None


def demo(env: dict[str, str], *, symbols: int, days: int) -> None:
    """``quant-assets demo`` into the instance and data directory of `env`."""
    command = [
        sys.executable,
        "-m",
        "quant_assets.cli",
        "demo",
        "--symbols",
        str(symbols),
        "--days",
        str(days),
    ]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=REPO, env=env, check=True)


def shoot(page: Any, path: Path) -> None:
    page.screenshot(path=str(path), animations="disabled")  # a dialog drawn, not fading in
    print(f"  wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", flush=True)


def take_screenshots(server: DevServer, out: Path) -> None:
    """The six pictures, each once its content is on the page."""
    ms = PAGE_TIMEOUT_S * 1000
    models = {m: event for m in MODEL_PREFERENCE if (event := latest_materialization(server, m))}
    ohlcv = latest_materialization(server, "ohlcv")
    if not models or ohlcv is None:
        raise WebUIError(f"the demo left no materialization of ohlcv ({ohlcv}) or of any model")
    model, trained = next(iter(models.items()))
    with browser_page(width=1600, height=1000) as page:
        show_asset_graph(page, server, timeout=PAGE_TIMEOUT_S)
        shoot(page, out / "asset_graph.png")

        day, symbol = str(ohlcv["partition"]).split("|")
        open_ui(page, server, "/assets/ohlcv?view=partitions")
        page.get_by_text(day, exact=True).first.click(timeout=ms)
        page.get_by_text(symbol, exact=True).first.click(timeout=ms)
        page.get_by_text(f"{day}|{symbol}", exact=True).first.wait_for(timeout=ms)
        page.get_by_text("candles_valid", exact=True).first.wait_for(timeout=ms)
        shoot(page, out / "ohlcv_partitions.png")

        open_ui(page, server, "/assets/ohlcv?view=checks")
        page.get_by_text("Latest execution", exact=True).first.wait_for(timeout=ms)
        page.get_by_text("Passed", exact=True).first.wait_for(timeout=ms)
        shoot(page, out / "ohlcv_checks.png")

        open_ui(page, server, f"/runs/{trained['runId']}")
        page.get_by_text("RUN_SUCCESS", exact=True).first.wait_for(timeout=ms)
        shoot(page, out / "run.png")

        open_ui(page, server, f"/assets/{model}?view=events")
        page.get_by_text("verdict", exact=True).first.wait_for(timeout=ms)
        page.get_by_text("metrics", exact=True).first.wait_for(timeout=ms)
        shoot(page, out / "model_metadata.png")

        # The decile plot is a PNG inside markdown metadata, which the UI opens in a dialog.
        row = page.locator("tr", has=page.get_by_text("deciles", exact=True)).first
        row.get_by_text("[Show Markdown]").click(timeout=ms)
        plot = page.get_by_role("dialog").locator('img[src^="data:image/png"]').first
        plot.wait_for(state="visible", timeout=ms)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=plot.element_handle())
        page.get_by_role("button", name="Close").wait_for(state="visible", timeout=ms)
        shoot(page, out / "model_deciles.png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--symbols", type=int, default=3)
    parser.add_argument("--days", type=int, default=10, help="10: the fewest with which the demo trains")
    parser.add_argument("--keep", action="store_true", help="keep the temporary instance and data")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="quant-assets-screenshots-"))
    started = time.monotonic()
    try:
        home = work / "dagster_home"
        home.mkdir()
        shutil.copyfile(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("QT_", "DAGSTER_"))},
            "DAGSTER_HOME": str(home),
            "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
            "QT_DATA_DIR": str(work / "data"),
            "QT_MAX_SYMBOLS": str(args.symbols),
            "QT_DATA_LOOKBACK_DAYS": str(args.days),
            "QT_HISTORY_START": str(lookback_start(args.days)),
            "QT_MODEL_TRAIN_DAYS": str(args.days),
        }
        demo(env, symbols=args.symbols, days=args.days)
        with Simulator(signal=True) as sim:  # the demo's market: a re-fetch gives the same candles
            env |= {"QT_BINANCE_FAPI_URL": sim.url, "QT_COINGECKO_API_URL": sim.coingecko_url}
            with DevServer(cwd=REPO, env=env, log_path=work / "dagster_dev.log") as server:
                print(f"dagster dev on {server.url}; waiting for its sensors to settle", flush=True)
                wait_for_quiet(server, since=time.time(), timeout=QUIET_TIMEOUT_S)
                take_screenshots(server, args.out)
    except (WebUIError, subprocess.CalledProcessError) as error:
        print(f"screenshots: {error}\n(instance and data kept in {work})", file=sys.stderr)
        return 1
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots in {args.out} after {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
