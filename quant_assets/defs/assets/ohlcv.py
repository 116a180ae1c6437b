"""``ohlcv``: closed 5-minute candles of every enabled venue, one Parquet file per venue, symbol and UTC day."""

import datetime as dt
from collections.abc import Callable

import dagster as dg
import pandas as pd

from quant_assets.cross_venue import CHECK_NAME as CROSS_VENUE
from quant_assets.cross_venue import check_cross_venue
from quant_assets.defs.checks import combine, emit_partition_checks
from quant_assets.defs.partitions import ohlcv_partitions, split_ohlcv_key
from quant_assets.defs.resources import BinanceResource, LakeResource, VenuesResource
from quant_assets.errors import InvalidSymbolError, QuantAssetsError, StoreError
from quant_assets.ohlcv_collect import (
    LEFT_OUT_REASONS,
    CollectResult,
    SymbolDay,
    VenueCandles,
    collect_ohlcv,
    consecutive_runs,
)
from quant_assets.progress import throttled
from quant_assets.quality import CheckOutcome, check_ohlcv_partition, failure_summary
from quant_assets.sources.venues import match_instruments
from quant_assets.store.lake import OHLCV_INVALID_KEY, Lake, WriteResult

EXCHANGE = "binance"
CHECK_NAMES = ("candles_valid", "complete_day", CROSS_VENUE)
_VALIDITY_RULES = (
    "unique_open_time",
    "five_minute_grid",
    "ohlc_consistent",
    "volumes_non_negative",
)


def rerun_commands(failed: list[SymbolDay]) -> list[str]:
    """One ``quant-assets backfill`` command per symbol and run of consecutive failed days."""
    by_symbol: dict[str, list[dt.date]] = {}
    for partition in failed:
        by_symbol.setdefault(partition.symbol, []).append(partition.day)
    return [
        f"  quant-assets backfill --symbols {symbol} --end {last} --days {(last - first).days + 1}"
        for symbol, days in sorted(by_symbol.items())
        for first, last in consecutive_runs(days)
    ][:20]


@dg.asset(
    partitions_def=ohlcv_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    pool="binance",
    kinds={"parquet", "duckdb"},
    group_name="market_data",
    # (day, symbol) depends on that day's universe only: a new snapshot makes its own day stale.
    deps=[
        dg.AssetDep(
            "coin_universe",
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"),
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "candles_valid",
            asset="ohlcv",
            description="every partition, candles as served: no open_time served twice with differing "
            "values, exact 5-minute grid, low <= open/close <= high, volumes >= 0. A failing "
            "symbol-day stays stored and is left out of feature_table",
        ),
        dg.AssetCheckSpec(
            "complete_day",
            asset="ohlcv",
            description="every partition: 288 candles; a gap is reported with its missing minutes (warning), never filled",
        ),
        dg.AssetCheckSpec(
            CROSS_VENUE,
            asset="ohlcv",
            description="every partition with candles of two or more venues (QT_VENUES): each venue's close "
            "per coin within QT_CROSS_VENUE_MAX_BP (default 50 bp) of the venues' median close at that "
            "minute; failing minutes listed as HH:MM UTC per venue and symbol",
        ),
    ],
)
def ohlcv(  # noqa: ANN201 - a generator of check results
    context: dg.AssetExecutionContext, lake: LakeResource, binance: BinanceResource, venues: VenuesResource
):
    """Closed 5-minute candles of one coin and UTC day from every enabled venue (`QT_VENUES`).

    Binance USD-M `/fapi/v1/klines` always; Bybit `/v5/market/kline` and OKX
    `/api/v5/market/(history-)candles` when enabled, the `exchange` column telling them apart. On
    every venue the stored `symbol` is the universe's (Binance) symbol of the coin and the venue's
    instrument is in `venue_symbol`; Bybit and OKX prices are per coin and volumes in coins (trade
    counts and taker volumes NULL: they do not serve them). A coin a venue does not list has no
    rows of it. `cross_venue_close` compares the venues' closes per minute.

    A run may cover thousands of partitions: consecutive days of a symbol are fetched together
    (limit 499, the cheapest weight per candle) inside the shared weight budget. Candles are stored
    as served: the still-open candle never, a gap stays a gap (the `complete_day` check warns),
    one open time served with differing values is kept twice (`candles_valid` fails). What the
    client left out (exact repeats, the still-open candle, rows outside the days) is counted in each
    partition's metadata. One failed symbol-day keeps every other written partition (also the days
    of its symbol fetched before a refused request) and fails the run naming it.

    With `QT_BINANCE_ARCHIVE_URL` set, a run over more than one day first takes every Binance day
    Binance's archive holds (daily zips verified against their sha256 `.CHECKSUM`, no API weight),
    the other days from REST; each partition's `source` (archive or rest) and `archive_sha256` or
    `archive_fallback`, and the run's `run_days_archive` / `run_days_rest`, say which path it took.
    """
    store = lake.lake()
    wanted: list[SymbolDay] = []
    invalid: list[str] = []
    for key in context.partition_keys:
        try:
            symbol, day = split_ohlcv_key(key)
        except InvalidSymbolError:
            invalid.append(key)
            continue
        wanted.append(SymbolDay(symbol, day))

    enabled = venues.enabled()
    written: dict[str, dict[SymbolDay, tuple[WriteResult, list[CheckOutcome]]]] = {v: {} for v in enabled}

    def writer(venue: str) -> Callable[[SymbolDay, pd.DataFrame], None]:
        def write(partition: SymbolDay, candles: pd.DataFrame) -> None:
            outcomes = check_ohlcv_partition(candles, partition.day)
            # Written with the data, in the same atomic file: feature_table reads it (Lake.invalid_ohlcv).
            reason = failure_summary(outcomes)
            result = store.write(
                "ohlcv",
                candles,
                metadata={OHLCV_INVALID_KEY: reason} if reason else None,
                exchange=venue,
                symbol=partition.symbol,
                date=partition.day,
            )
            written[venue][partition] = (result, outcomes)

        return write

    progress = throttled(lambda line: context.log.info(f"ohlcv: {line}"))
    # A backfill over several days takes what Binance's archive holds from it (QT_BINANCE_ARCHIVE_URL,
    # no API weight); a one-day run (the daily refresh: the archive lags) goes to REST.
    archive = binance.archive_client() if len({p.day for p in wanted}) > 1 else None
    context.log.info(
        f"collecting {len(wanted):,} symbol-days from {binance.base_url}"
        + (f" (archive first: {binance.archive_url})" if archive is not None else "")
    )
    collected: dict[str, CollectResult] = {
        EXCHANGE: collect_ohlcv(
            binance.client(), wanted, writer(EXCHANGE), on_progress=progress, archive=archive
        )
    }
    not_listed: dict[str, list[str]] = {}
    for venue in enabled[1:]:
        try:
            source, limit = _venue_source(venue, venues, store, wanted)
        except QuantAssetsError as exc:
            context.log.warning(f"ohlcv {venue}: instruments not read: {exc}")
            collected[venue] = CollectResult(failed={p: f"instruments not read: {exc}" for p in wanted})
            continue
        listed = [p for p in wanted if p.symbol in source.instruments]
        not_listed[venue] = sorted({p.symbol for p in wanted} - set(source.instruments))
        context.log.info(
            f"collecting {len(listed):,} symbol-days from {venue}"
            + (f"; not listed there: {', '.join(not_listed[venue][:20])}" if not_listed[venue] else "")
        )
        collected[venue] = collect_ohlcv(source, listed, writer(venue), on_progress=progress, limit=limit)
    for venue in enabled:
        store.compact_ohlcv({partition.day for partition in written[venue]}, exchange=venue)
    lake.catalog().ensure_views()

    failures: dict[SymbolDay, list[str]] = {}
    for venue, result in collected.items():
        for partition, message in result.failed.items():
            failures.setdefault(partition, []).append(message if venue == EXCHANGE else f"{venue}: {message}")
    outcome = collected[EXCHANGE]
    run_summary: dict[str, object] = {
        "run_partitions": len(context.partition_keys),
        "run_candles": sum(sum(r.written.values()) for r in collected.values()),
        "run_requests": sum(r.requests for r in collected.values()),
        "run_weight": outcome.weight,
    }
    if archive is not None:
        sources = list(outcome.sources.values())
        run_summary["run_days_archive"] = sources.count("archive")
        run_summary["run_days_rest"] = sources.count("rest")
        # Why a day went to REST is in that partition's own `archive_fallback` (this summary is
        # repeated in every partition's metadata: counts only).
    if len(enabled) > 1:
        run_summary["run_candles_by_venue"] = dg.MetadataValue.json(
            {venue: sum(result.written.values()) for venue, result in collected.items()}
        )
        run_summary["not_listed"] = dg.MetadataValue.json(not_listed)
    checks_by_partition: dict[str, list[CheckOutcome]] = {}
    for partition, (result, outcomes) in sorted(written[EXCHANGE].items()):
        if partition in failures:
            continue  # stored, but the partition is not whole: the run fails naming it
        key = f"{partition.day.isoformat()}|{partition.symbol}"
        by_venue = {v: written[v][partition][1] for v in enabled if partition in written[v]}
        checks_by_partition[key] = [
            *_venue_checks(by_venue),
            _cross_venue(store, enabled, partition, venues.cross_venue_max_bp),
        ]
        gaps = {o.name: o for o in outcomes}["complete_day"].metadata
        extra: dict[str, object] = {}
        if len(enabled) > 1:
            extra["venues"] = dg.MetadataValue.json(
                {
                    venue: {
                        "candles": written[venue][partition][0].rows,
                        "left_out": collected[venue].left_out.get(partition, {}),
                        "sha256": written[venue][partition][0].sha256,
                    }
                    for venue in enabled
                    if partition in written[venue]
                }
            )
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=key,
                metadata={
                    "candles": result.rows,
                    "candles_valid": checks_by_partition[key][0].passed,
                    "missing_candles": gaps["missing_candles"],
                    "gaps": dg.MetadataValue.json(gaps["gaps"]),
                    **{
                        f"left_out_{reason}": count
                        for reason, count in outcome.left_out.get(
                            partition, dict.fromkeys(LEFT_OUT_REASONS, 0)
                        ).items()
                    },
                    "path": dg.MetadataValue.path(str(result.path)),
                    "sha256": result.sha256,
                    "source": outcome.sources.get(partition, "rest"),
                    **_archive_metadata(outcome, partition),
                    **extra,
                    **run_summary,
                },
            )
        )
    yield from emit_partition_checks(context, context.asset_key, checks_by_partition, CHECK_NAMES)

    failed = {f"{p.day.isoformat()}|{p.symbol}": "; ".join(m) for p, m in sorted(failures.items())}
    failed.update({key: "invalid symbol in partition key" for key in invalid})
    context.log.info(
        f"ohlcv run done: {len(checks_by_partition):,} partitions written, {len(failed):,} failed"
    )
    if failed:
        listing = "\n".join(f"  {key}: {message}" for key, message in list(failed.items())[:50])
        more = (
            f"\n  ... and {len(failed) - 50} more (metadata: failed_partitions)" if len(failed) > 50 else ""
        )
        raise dg.Failure(
            description=(
                f"{len(failed)} of {len(context.partition_keys)} symbol-days failed; the other "
                f"{len(checks_by_partition)} are stored. Re-run just these:\n{listing}{more}\n"
                + "\n".join(rerun_commands(sorted(failures)))
            ),
            metadata={"failed_partitions": dg.MetadataValue.json(failed), **run_summary},
            allow_retries=False,
        )


def _archive_metadata(outcome: CollectResult, partition: SymbolDay) -> dict[str, str]:
    """The verified archive checksum of a partition taken from the archive, or why it was not."""
    if partition in outcome.archive_sha256:
        return {"archive_sha256": outcome.archive_sha256[partition]}
    if partition in outcome.archive_fallbacks:
        return {"archive_fallback": outcome.archive_fallbacks[partition]}
    return {}


def _venue_source(
    venue: str, venues: VenuesResource, store: Lake, wanted: list[SymbolDay]
) -> tuple[VenueCandles, int]:
    """The venue's client with the universe's symbols matched to its instruments by coin."""
    client = venues.bybit_client() if venue == "bybit" else venues.okx_client()
    instruments = client.instruments()
    bases: dict[str, str | None] = {partition.symbol: None for partition in wanted}
    for day in sorted({partition.day for partition in wanted}):
        try:
            universe = store.read("coin_universe", date=day)
        except StoreError:
            continue  # no snapshot that day: the coin is read from the symbol (BTCUSDT -> BTC)
        for symbol, base in zip(universe["symbol"], universe["base_asset"], strict=True):
            if symbol in bases and base:
                bases[symbol] = str(base)
    return VenueCandles(client, match_instruments(bases.items(), instruments)), client.max_limit


def _per_venue(name: str, outcomes: dict[str, CheckOutcome], severity: str) -> CheckOutcome:
    """Several venues' outcomes of one check folded into one (each venue's in the metadata)."""
    if len(outcomes) == 1 and EXCHANGE in outcomes:
        return outcomes[EXCHANGE]  # one venue: exactly the single-venue outcome
    renamed = [
        CheckOutcome(venue, o.passed, o.severity, o.description, o.metadata) for venue, o in outcomes.items()
    ]
    return combine(name, renamed, severity)


def _venue_checks(by_venue: dict[str, list[CheckOutcome]]) -> list[CheckOutcome]:
    """``candles_valid`` and ``complete_day`` of one partition over the venues that stored it."""
    valid = {}
    complete = {}
    for venue, outcomes in by_venue.items():
        by_rule = {o.name: o for o in outcomes}
        valid[venue] = combine("candles_valid", [by_rule[r] for r in _VALIDITY_RULES], "ERROR")
        complete[venue] = by_rule["complete_day"]
    return [_per_venue("candles_valid", valid, "ERROR"), _per_venue("complete_day", complete, "WARN")]


def _cross_venue(store: Lake, enabled: tuple[str, ...], partition: SymbolDay, max_bp: int) -> CheckOutcome:
    """``cross_venue_close`` of one partition, from the files each enabled venue has stored for it."""
    frames = {}
    for venue in enabled:
        path = store.path("ohlcv", exchange=venue, symbol=partition.symbol, date=partition.day)
        if path.exists():
            frames[venue] = store.read("ohlcv", exchange=venue, symbol=partition.symbol, date=partition.day)
    return check_cross_venue(frames, symbol=partition.symbol, max_bp=max_bp)
