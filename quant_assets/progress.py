"""Progress lines for long collections, the same in the CLI and in a Dagster run's log."""

from __future__ import annotations

import time
from collections.abc import Callable

from quant_assets.ohlcv_collect import CollectProgress


def format_progress(progress: CollectProgress) -> str:
    """One line: symbol-days done, candles, requests, weight, elapsed and ETA."""
    eta = "?" if progress.eta_s is None else _duration(progress.eta_s)
    rate = progress.candles / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
    return (
        f"{progress.days_done:,}/{progress.days_total:,} symbol-days, {progress.candles:,} candles "
        f"({rate:,.0f}/s), {progress.requests:,} requests, weight {progress.weight:,}, "
        f"elapsed {_duration(progress.elapsed_s)}, ETA {eta}"
    )


def throttled(emit: Callable[[str], None], *, every_s: float = 5.0) -> Callable[[CollectProgress], None]:
    """A progress callback that emits at most every `every_s` seconds, and always the last update."""
    last = 0.0

    def on_progress(progress: CollectProgress) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every_s or progress.days_done == progress.days_total:
            last = now
            emit(format_progress(progress))

    return on_progress


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, seconds_left = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{seconds_left:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
