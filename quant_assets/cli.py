"""``quant-assets``: the demo, the simulator, backfills and catalog upkeep from a shell.

Dagster is imported only by the commands that run assets, so ``quant-assets simulator`` starts fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from quant_assets.errors import QuantAssetsError
from quant_assets.log_forwarding import not_forwarded
from quant_assets.settings import Settings, lookback_start

if TYPE_CHECKING:
    import pandas as pd

MODEL_CHOICES = ("xgboost", "lightgbm", "nhits", "patchtst")  # quant_assets.models.base.MODEL_NAMES
VENUES_QUERY = (  # the demo's rows per venue (QT_VENUES=binance,bybit,okx shows three)
    "SELECT exchange, count(DISTINCT symbol) AS symbols, count(*) AS candles, "
    "count(trades) AS with_trade_count FROM ohlcv GROUP BY exchange ORDER BY exchange"
)
DEMO_QUERY = (
    "SELECT symbol, count(*) AS candles, round(stddev(ln(close)), 4) AS log_price_sd "
    "FROM ohlcv GROUP BY symbol ORDER BY candles DESC"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quant-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulator", help="serve the exchange simulator on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8900)
    sim.add_argument(
        "--weight-limit", type=int, default=None, help="Binance weight per minute (default: off)"
    )
    sim.add_argument(
        "--signal",
        action="store_true",
        help="plant the weak order-flow signal models should find (default: off, nothing to learn)",
    )

    demo = commands.add_parser("demo", help="materialize the whole graph against the simulator")
    demo.add_argument("--symbols", type=int, default=10, help="universe size (default 10)")
    demo.add_argument(
        "--days", type=int, default=20, help="days of candles (default 20; the models need 10 or more)"
    )

    backfill = commands.add_parser("backfill", help="collect ohlcv history as ONE run per rectangle")
    backfill.add_argument("--days", type=int, default=None, help="days back (default QT_DATA_LOOKBACK_DAYS)")
    backfill.add_argument(
        "--end", type=dt.date.fromisoformat, default=None, help="last day (default yesterday)"
    )
    backfill.add_argument("--symbols", default=None, help="comma-separated; default: every symbol partition")
    backfill.add_argument(
        "--in-process",
        action="store_true",
        help="run in this process (the fast local mode) instead of submitting to $DAGSTER_HOME's instance",
    )

    catalog = commands.add_parser("catalog", help="compact the ohlcv day files and (re)create the views")
    catalog.add_argument("--force", action="store_true", help="recreate every view (after moving the data)")

    features = commands.add_parser(
        "features", help="list the stored feature days built under another schema hash; rebuild them"
    )
    features.add_argument(
        "--rebuild-stale", action="store_true", help="rebuild them: one feature_table run per range of days"
    )

    train = commands.add_parser(
        "train", help="train new model versions on the stored feature table; print them against the baselines"
    )
    train.add_argument("--days", type=int, default=None, help="training window (default QT_MODEL_TRAIN_DAYS)")
    train.add_argument(
        "--models",
        default=",".join(MODEL_CHOICES),
        help=f"comma-separated (default {','.join(MODEL_CHOICES)})",
    )
    train.add_argument(
        "--profile", choices=("small", "full"), default="full", help="model configs (default full)"
    )
    train.add_argument(
        "--end-day",
        type=dt.date.fromisoformat,
        default=None,
        help="last day (default: last stored features day)",
    )
    train.add_argument(
        "--in-process",
        action="store_true",
        help="train in this process instead of submitting a retrain_job run to $DAGSTER_HOME's instance",
    )

    predict = commands.add_parser("predict", help="each model's latest prediction at the last closed candle")
    predict.add_argument("--symbol", required=True, help="e.g. BTCUSDT")
    predict.add_argument(
        "--as-of",
        type=dt.datetime.fromisoformat,
        default=None,
        help="moment of inference, UTC (default now): the last candle closed by then is predicted from",
    )

    args = parser.parse_args(argv)
    # One "planned" event per run instead of one per partition: on SQLite, 9,000 of them cost about
    # 135 s before a backfill starts. The price: a failed run does not mark its partitions failed in
    # the UI; the run's failure (and `backfill`'s output) names them. The Makefile sets it for dev too.
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
    before = set(logging.getLogger().handlers)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in set(logging.getLogger().handlers) - before:  # a run's log prints what it took
        handler.addFilter(not_forwarded)
    logging.getLogger("quant_assets").setLevel(logging.INFO)
    try:
        if args.command == "simulator":
            return _simulator(args.port, args.weight_limit, signal=args.signal)
        if args.command == "demo":
            return _demo(symbols=args.symbols, days=args.days)
        if args.command == "backfill":
            return _backfill(days=args.days, end=args.end, symbols=args.symbols, in_process=args.in_process)
        if args.command == "features":
            return _features(rebuild_stale=args.rebuild_stale)
        if args.command == "train":
            return _train(
                days=args.days,
                models=args.models,
                profile=args.profile,
                end_day=args.end_day,
                in_process=args.in_process,
            )
        if args.command == "predict":
            return _predict(symbol=args.symbol, as_of=args.as_of)
        return _catalog(force=args.force)
    except QuantAssetsError as error:  # bad input or configuration: say what, no traceback
        print(f"quant-assets {args.command}: {error}", file=sys.stderr)
        return 2


def _simulator(port: int, weight_limit: int | None, *, signal: bool = False) -> int:
    from quant_assets.simulator import run_server

    planted = ", planted signal ON" if signal else ""
    print(f"simulator on http://127.0.0.1:{port}  (CoinGecko under /api/v3{planted}); Ctrl-C stops it")
    print(f"  export QT_BINANCE_FAPI_URL=http://127.0.0.1:{port}")
    print(f"  export QT_COINGECKO_API_URL=http://127.0.0.1:{port}/api/v3")
    print(f"  export QT_BYBIT_API_URL=http://127.0.0.1:{port} QT_OKX_API_URL=http://127.0.0.1:{port}")
    run_server(port=port, weight_limit=weight_limit, signal=signal)
    return 0


def _features(*, rebuild_stale: bool) -> int:
    from quant_assets.feature_days import stale_feature_days
    from quant_assets.features import feature_schema
    from quant_assets.store.lake import Lake

    registry_hash = feature_schema().hash
    stale = stale_feature_days(Lake(Settings.from_env().data_dir), registry_hash)
    print(f"registry schema hash {registry_hash}: {len(stale)} stored days built under another one")
    for day, stored in sorted(stale.items()):
        print(f"  {day}  {stored or 'no hash recorded'}")
    if not stale or not rebuild_stale:
        return 0
    import dagster as dg

    from quant_assets.definitions import defs
    from quant_assets.defs.orchestrate import TERMINAL_RUN_CONFIG, default_instance
    from quant_assets.defs.ranges import day_range_tags
    from quant_assets.defs.resources import build_resources
    from quant_assets.ohlcv_collect import consecutive_runs

    instance, failed = default_instance(), 0
    for first, last in consecutive_runs(set(stale)):  # one run per range of days, as the sensor asks
        outcome = dg.materialize(
            [defs.get_assets_def("feature_table")],
            instance=instance,
            resources=build_resources(),
            tags={**day_range_tags(first, last), "quant_assets/reason": "rebuild-stale"},
            run_config=TERMINAL_RUN_CONFIG,
            raise_on_error=False,
        )
        failed += not outcome.success
        print(
            f"feature_table {first}..{last}: {'ok' if outcome.success else 'FAILED'} (run {outcome.run_id})"
        )
    left = stale_feature_days(Lake(Settings.from_env().data_dir), registry_hash)
    print(f"{len(stale) - len(left)} days rebuilt; {len(left)} still stale")
    return 0 if not failed and not left else 1


def _demo(*, symbols: int, days: int) -> int:
    from quant_assets.simulator import Simulator

    if days < 1 or symbols < 1:
        raise QuantAssetsError(f"demo: --days and --symbols must be at least 1, got {days} and {symbols}")
    # The planted signal on: the models have something real to find (quant_assets.simulator.market).
    with Simulator(signal=True) as sim:
        os.environ["QT_BINANCE_FAPI_URL"] = sim.url
        os.environ["QT_COINGECKO_API_URL"] = sim.coingecko_url
        os.environ["QT_BYBIT_API_URL"] = sim.bybit_url
        os.environ["QT_OKX_API_URL"] = sim.okx_url
        os.environ["QT_MAX_SYMBOLS"] = str(symbols)
        os.environ.setdefault("QT_DATA_DIR", "./data")
        # Partitions start with the demo's first day, so the UI's "missing" means "not fetched".
        os.environ.setdefault("QT_HISTORY_START", str(lookback_start(days)))
        from quant_assets.defs.orchestrate import materialize_window

        started = time.monotonic()
        per_symbol, tables = materialize_window(days=days)
        elapsed = time.monotonic() - started
    catalog = Settings.from_env().data_dir / "quant.duckdb"
    print(f"\nmaterialized coin_universe, ohlcv and feature_table in {elapsed:.1f} s\n")
    print(per_symbol.to_string(index=False))
    print()
    print(tables.to_string(index=False))
    import duckdb

    with duckdb.connect(str(catalog), read_only=True) as con:
        print(f"\nohlcv rows per venue (QT_VENUES={Settings.from_env().venues}):")
        print(con.sql(VENUES_QUERY).df().to_string(index=False))
    print(f"\nQuery the catalog {catalog} (read-only, safe while runs write), e.g.:")
    print(
        f"  .venv/bin/python -c \"import duckdb; duckdb.connect('{catalog}', read_only=True).sql('{DEMO_QUERY}').show()\""
    )
    return _demo_models(days=days)


def _demo_models(*, days: int) -> int:
    """The demo's end: train the four models (small configs), predict and score the days after."""
    from quant_assets.defs.assets._model_asset import DEMO_MIN_DAYS, DEMO_SCORED_DAYS, demo_models
    from quant_assets.defs.orchestrate import default_instance
    from quant_assets.defs.partitions import last_complete_day

    if days < DEMO_MIN_DAYS:
        print(f"\nmodels skipped: they need --days {DEMO_MIN_DAYS} or more")
        return 0
    last = last_complete_day()
    first = last - dt.timedelta(days=days - 1)
    print(
        f"\ntraining xgboost, lightgbm, nhits and patchtst (small configs) on {first} .. "
        f"{last - dt.timedelta(days=DEMO_SCORED_DAYS)}, then predictions and model_evaluation of the days after"
    )
    started = time.monotonic()
    print(demo_models(first, last, instance=default_instance()))
    print(
        f"\nmodels trained, predictions and model_evaluation materialized in {time.monotonic() - started:.1f} s\n"
    )
    return _predict(symbol="BTCUSDT")


def _train(
    *, days: int | None, models: str, profile: str, end_day: dt.date | None, in_process: bool = False
) -> int:
    from quant_assets.defs.assets._model_asset import materialize_models, train_report
    from quant_assets.defs.orchestrate import default_instance, submit_training

    chosen = [m.strip() for m in models.split(",") if m.strip()]
    if in_process or _no_instance():
        outcome = materialize_models(
            chosen, days=days, profile=profile, end_day=end_day, instance=default_instance()
        )
    else:  # one retrain_job run through the instance's run coordinator, followed to its end
        outcome = submit_training(chosen, days=days, profile=profile, end_day=end_day)
    print(train_report(outcome))
    return 0 if outcome.success else 1


def _predict(*, symbol: str, as_of: dt.datetime | None = None) -> int:
    from quant_assets.models.serving import latest_predictions
    from quant_assets.store.lake import Lake
    from quant_assets.symbols import checked_symbol

    lake = Lake(Settings.from_env().data_dir)
    moment = dt.datetime.now(dt.UTC) if as_of is None else as_of.replace(tzinfo=as_of.tzinfo or dt.UTC)
    found = latest_predictions(lake, checked_symbol(symbol), moment)
    print(predict_report(symbol, found))
    return 0 if not found.empty else 1


def predict_report(symbol: str, found: pd.DataFrame) -> str:
    """Each model's latest prediction for `symbol`, promoted versions marked with ``*``."""
    import pandas as pd

    refused = dict(found.attrs.get("refused", {}))
    notes = [f"  {model} refused: {why}" for model, why in sorted(refused.items())]
    if symbol in found.attrs.get("missing_symbols", []):
        notes.append(
            f"  {symbol} has no closed candle stored in the warm-up window before {found.attrs.get('as_of')}"
        )
    if found.empty:
        head = (
            f"{symbol}: no prediction (no model version, or no candles: run quant-assets train / demo first)"
        )
        return "\n".join([head, *notes])
    lines = [f"{symbol}: forecast of the 12-bar (1 h) forward log return from the last closed candle"]
    lines.append(f"  {'model':<9} {'candle (UTC)':<19} {'prediction':>11}  version")
    for row in found.sort_values("model").itertuples(index=False):
        mark = "*" if row.promoted else " "
        lines.append(
            f"{mark} {row.model:<9} {pd.Timestamp(row.open_time):%Y-%m-%d %H:%M}   "
            f"{float(row.prediction):>+11.6f}  {row.version}"
        )
    lines.append("  * promoted: beat both naive baselines past noise on its test days")
    return "\n".join(lines + notes)


def _no_instance() -> bool:
    """True (and says so) when ``$DAGSTER_HOME`` is unset: no instance to submit to, run here."""
    if os.environ.get("DAGSTER_HOME"):
        return False
    print("DAGSTER_HOME is not set: running in this process (as --in-process)", file=sys.stderr)
    return True


def _backfill(*, days: int | None, end: dt.date | None, symbols: str | None, in_process: bool = False) -> int:
    """One ``ohlcv_job`` run per rectangle, submitted to the instance's run coordinator and followed
    (or, with `in_process`, run here); exit 1 naming the failed runs and symbol-days."""
    from quant_assets.defs.orchestrate import backfill_ohlcv

    settings = Settings.from_env()
    chosen = [s.strip() for s in symbols.split(",")] if symbols else None
    in_process = in_process or _no_instance()
    result = backfill_ohlcv(
        days=days or settings.lookback_days, end=end, symbols=chosen, in_process=in_process
    )
    print(result)
    return 0 if result.success else 1


def _catalog(*, force: bool) -> int:
    from quant_assets.store.catalog import Catalog
    from quant_assets.store.lake import Lake

    lake = Lake(Settings.from_env().data_dir)
    rewritten = lake.strip_path_columns()  # files of the older layout, so pandas reads the lake
    days = {dt.date.fromisoformat(p.stem.removeprefix("date=")) for p in lake.files("ohlcv")}
    lake.compact_ohlcv(days)
    created = Catalog(lake).ensure_views(force=force)
    print(
        f"rewrote {len(rewritten)} files of the older layout; compacted {len(days)} days; "
        f"views (re)created: {created or 'none needed'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
