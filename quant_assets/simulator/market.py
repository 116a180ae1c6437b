"""Deterministic, realistic prices for the simulated venues.

How a price path is made (all seeded by ``(seed, series, day)``, never by the request):

* **Daily level.** Per series, over a fixed ten-year horizon from the epoch (2025-01-01 00:00 UTC),
  a daily log-volatility AR(1) (``scipy.signal.lfilter``) scales Student-t shocks (df 4, fat tails).
  Every coin's shock is ``beta`` times the BTC shock plus its own, so coins move together. The log
  price mean-reverts slowly (half-life 60 days) to the coin's anchor price, so BTC stays near 90 k
  and a small coin stays below 1 for years.
* **Intraday bars.** Each UTC day's 288 five-minute returns are drawn from their own seed: an
  intraday log-vol AR(1) and a time-of-day profile scale Student-t shocks, which are then bridged so
  they sum exactly to that day's return. A candle is therefore a pure function of
  ``(seed, series, open_time)``: the same whatever range was asked for and whatever the clock says.
  Only whether it exists (listed yet, in a gap, closed or still forming) depends on the clock.
* **Candles.** open = previous close (bit-exact, also across days); high and low stretch beyond
  open/close by a volatility-scaled amount; volume follows a time-of-day profile, the day's
  volatility and the bar's absolute return; quote volume = volume x the bar's average price; taker
  buys are 40-60 % of volume, leaning with the bar's direction; trades = quote volume / trade size.

Coarser intervals (15m ... 1d) are aggregated from the 5m bars. Memory stays small: only a daily
path per series (ten years of floats) and an LRU of generated days are kept.

**Nothing to learn by default.** With the signal off, returns carry no serial structure a model could
use at the 12-bar (1-hour) horizon; only their size is predictable (volatility clustering). The two
mechanisms that could leave some were measured: the slow mean reversion moves a day's expected return
by about 0.08 of the day's standard deviation, which bounds the correlation of any predictor with the
next hour's return at 0.016 (through the scale-free features, whose longest return is a day, 0.002),
and the bridge leaves bars exactly uncorrelated when the day's target variance equals the bars' summed
variance, as it does on average. Over 40 seeds x BTCUSDT and ETHUSDT x 650 days, the correlation of
the past and the next 12-bar return is -0.0015 +- 0.0012 and the lag-1 autocorrelation of 5m
returns -0.0005 +- 0.0005. ``quant_assets_tests/simulator/test_signal.py`` keeps the
autocorrelations of 5m and 12-bar returns at lags 1-24 within noise, with the signal off and on.

**The planted signal** (``Market(signal=True)``, ``Simulator(signal=True)``,
``quant-assets simulator --signal``; off by default). A weak, documented effect that proves the model
chain both ways: order flow predicts the next hour. Each bar of a series gets an independent flow
shock ``x ~ N(0, 1)`` (its own seeded stream) that

* shows in the bar's taker-buy share: ``+ SIGNAL_TAKER_SHARE * x`` (0.08; the share is clipped to
  25-75 % instead of 40-60 %), so the feature library's ``taker_buy_ratio`` and
  ``taker_buy_ratio_12`` see it; and
* moves the own (non-BTC) return of the bar ``SIGNAL_LAG_BARS`` (12) later by
  ``SIGNAL_RETURN_SHARE * sd * x`` (0.5 of that bar's own standard deviation), before the bridge.

So the next 12-bar return (``fwd_ret_12`` at t) holds the flow of exactly the last 12 bars (t-11 ..
t), which ``taker_buy_ratio_12`` measures, while no return is correlated with any earlier return: the
last hour's return (the naive baseline) predicts nothing, and a model has to find the taker-buy
features. For BTCUSDT, whose own return is its whole return, the best possible correlation with
``fwd_ret_12`` is 0.5 / sqrt(1 + 0.5**2) = 0.45. Measured over 40 seeds, 8 symbols x 30 days: the
cross-sectional Spearman IC of ``taker_buy_ratio_12`` with ``fwd_ret_12``, averaged over open times,
is 0.263 +- 0.011 (0.239 .. 0.288; seed 7, the 30 days before 2026-11-23: 0.290), its correlation
for BTCUSDT alone 0.31 +- 0.033; the last 12-bar return's IC is 0.00 +- 0.012 with the signal on or
off, and the off market's flow IC 0.00 +- 0.010. The size is set so that small tests decide: on 6
symbols x 7 days, LightGBM's small configuration reaches a test IC near 0.17 and is promoted, and
scores about 0.22 on the two following days (``quant_assets_tests/models/test_serving.py``); a day's
IC over 6 symbols has a standard error near 0.09. Candles stay a pure function of ``(seed,
series, open_time, signal)``, open = previous close, and every day's return (its last close) is the
same with the signal on or off.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from quant_assets.simulator.catalog import (
    PERPETUAL_DELIVERY_MS,
    STABLECOINS,
    ContractSpec,
    SimCoin,
    build_catalogue,
    price_decimals_for,
    qty_decimals_for,
    stable_id,
    unit_hash,
)

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
EPOCH_MS = int(EPOCH.timestamp() * 1000)
FIVE_MINUTES_MS = 300_000
DAY_MS = 86_400_000
BARS_PER_DAY = 288
HORIZON_DAYS = 3653  # series are defined from the epoch for ten years
HORIZON_END_MS = EPOCH_MS + HORIZON_DAYS * DAY_MS

# Intervals served, all whole multiples of 5 minutes aligned to the epoch (a UTC midnight).
INTERVALS_MS: dict[str, int] = {
    "5m": FIVE_MINUTES_MS,
    "15m": 3 * FIVE_MINUTES_MS,
    "30m": 6 * FIVE_MINUTES_MS,
    "1h": 12 * FIVE_MINUTES_MS,
    "2h": 24 * FIVE_MINUTES_MS,
    "4h": 48 * FIVE_MINUTES_MS,
    "6h": 72 * FIVE_MINUTES_MS,
    "8h": 96 * FIVE_MINUTES_MS,
    "12h": 144 * FIVE_MINUTES_MS,
    "1d": DAY_MS,
}

_EARLY_LISTINGS_MS = {"BTCUSDT": 1_569_398_400_000, "ETHUSDT": 1_569_398_400_000}  # 2019-09-25
MARKET_SERIES = "BTCUSDT"  # the common factor every other series loads on with its beta
MEAN_REVERSION_PER_DAY = math.log(2) / 60  # log price half-way back to its anchor in 60 days
STUDENT_DF = 4.0
_T_SCALE = math.sqrt(STUDENT_DF / (STUDENT_DF - 2))  # a t(4) draw divided by this has variance 1

# Daily log-vol AR(1): persistence and innovation scale (stationary sd ~ 0.38).
_DAILY_PHI, _DAILY_ETA = 0.94, 0.13
_DAILY_LOGVOL_VAR = _DAILY_ETA**2 / (1 - _DAILY_PHI**2)
# Intraday log-vol AR(1) per 5m bar, restarted each day.
_BAR_PHI, _BAR_ETA = 0.9, 0.12
_BAR_LOGVOL_VAR = _BAR_ETA**2 / (1 - _BAR_PHI**2)

# Columns of a day matrix (288 rows, one per 5m bar).
OPEN, HIGH, LOW, CLOSE, VOLUME, QUOTE_VOLUME, TRADES, TAKER_BASE, TAKER_QUOTE = range(9)
_N_COLUMNS = 9

_DAILY_STREAM, _RETURNS_STREAM, _FIELDS_STREAM, _FLOW_STREAM = 0, 1, 2, 3

# The planted signal (module docstring): how much of the bar's own return standard deviation the last
# hour's flow moves, and how far a unit of flow moves the taker-buy share.
SIGNAL_LAG_BARS = 12
SIGNAL_RETURN_SHARE = 0.5
SIGNAL_TAKER_SHARE = 0.08
_TAKER_CLIP = (0.4, 0.6)
_TAKER_CLIP_SIGNAL = (0.25, 0.75)
_DAY_CACHE_SIZE = 1024  # ~21 MB: 288 x 9 float64 per day; a backfill reads each day about twice
_RETURNS_CACHE_SIZE = 2048  # BTC days are read by every coin of the same day


def _time_of_day_profile(amp_us: float, amp_asia: float) -> np.ndarray:
    # Crypto trades round the clock, busiest when the US and Europe overlap (~15:00 UTC), with a
    # smaller Asian peak (~02:00 UTC).
    hours = (np.arange(BARS_PER_DAY) + 0.5) * 24 / BARS_PER_DAY
    return (
        1.0
        + amp_us * np.cos(2 * np.pi * (hours - 15.0) / 24)
        + amp_asia * np.cos(4 * np.pi * (hours - 2.0) / 24)
    )


_VOL_PROFILE = _time_of_day_profile(0.25, 0.08)
_VOL_PROFILE /= np.sqrt(np.mean(_VOL_PROFILE**2))  # mean variance 1: a day's variance is kept
_VOLUME_PROFILE = _time_of_day_profile(0.35, 0.10)
_VOLUME_PROFILE /= _VOLUME_PROFILE.mean()


@dataclass(frozen=True)
class SeriesSpec:
    """Parameters of one price series (one per tradable coin; aliases share one).

    Attributes:
        key: series id, e.g. ``"BTCUSDT"`` or ``"cg:tether"`` for a coin Binance does not list.
        anchor_price: price the log price mean-reverts to, per QUOTED unit (per 1000 coins for a
            ``1000...`` contract), in USD.
        annual_vol: annualised volatility of log returns.
        beta: loading on the BTC factor.
        daily_volume_usd: anchor quote volume per day, USD.
        trade_size_usd: average trade size, USD (sets the trade count).
        qty_decimals: lot precision; volumes never fall below one lot.
    """

    key: str
    anchor_price: float
    annual_vol: float
    beta: float
    daily_volume_usd: float
    trade_size_usd: float
    qty_decimals: int


@dataclass(frozen=True)
class _Daily:
    level: np.ndarray  # log price at 00:00 UTC of each day, HORIZON_DAYS + 1 values
    shock: np.ndarray  # the day's total shock (beta x BTC + own)
    sigma: np.ndarray  # sd of the day's total log return
    idio_sigma: np.ndarray  # sd of the day's own (non-BTC) log return
    volume_factor: np.ndarray  # multiplies the anchor daily volume


@dataclass(frozen=True)
class Candles:
    """Candles as columns, ascending by ``open_time``; prices in quote currency per quoted unit.

    ``open_time``/``close_time`` are epoch milliseconds UTC (``close_time`` = open + interval - 1).
    The last candle may still be forming (``close_time >= now``); its values are partial.
    """

    open_time: np.ndarray
    close_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray
    taker_buy_volume: np.ndarray
    taker_buy_quote_volume: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time)


@dataclass(frozen=True)
class Window24h:
    """Statistics of the last 24 hours of a series (the 288 5m bars up to the clock, forming bar included).

    Times are epoch milliseconds UTC; prices per quoted unit; ``volume`` in base units,
    ``quote_volume`` in USD(T). ``bars`` is 0 when nothing traded yet (not listed yet).
    """

    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    last: float
    volume: float
    quote_volume: float
    trades: int
    bars: int


@dataclass(frozen=True)
class CoinQuote:
    """What CoinGecko shows for one coin at the clock: USD per ONE coin, 24h volume in USD."""

    price: float
    open_24h: float
    high_24h: float
    low_24h: float
    volume_usd: float


def _to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # naive datetimes are read as UTC, as in the lake
    return int(value.timestamp() * 1000)


def _quarter_deliveries(after_ms: int, count: int) -> list[int]:
    """Binance quarterly deliveries (last Friday of Mar/Jun/Sep/Dec, 08:00 UTC) after `after_ms`."""
    out: list[int] = []
    moment = datetime.fromtimestamp(after_ms / 1000, tz=UTC)
    year, month = moment.year, moment.month
    while len(out) < count:
        quarter_month = ((month - 1) // 3 + 1) * 3
        if quarter_month == 12:
            last_day = datetime(year + 1, 1, 1, tzinfo=UTC) - timedelta(days=1)
        else:
            last_day = datetime(year, quarter_month + 1, 1, tzinfo=UTC) - timedelta(days=1)
        friday = last_day - timedelta(days=(last_day.weekday() - 4) % 7)
        delivery_ms = _to_ms(friday.replace(hour=8))
        if delivery_ms > after_ms:
            out.append(delivery_ms)
        month = quarter_month + 1
        if month > 12:
            month, year = 1, year + 1
    return out


class Market:
    """The simulated market: coins, contracts and their candles, under one clock.

    Thread-safe: generated data are immutable and cached; the clock is one attribute.
    """

    def __init__(
        self, *, seed: int = 7, now: datetime | None = None, n_symbols: int = 120, signal: bool = False
    ) -> None:
        """Build the catalogue and contracts (price paths are generated lazily).

        Args:
            seed: fixes every price path; the same seed gives the same candles, byte for byte.
            now: a fixed market clock (UTC; naive values are read as UTC), or ``None`` for the real
                wall clock.
            n_symbols: Layer-1/Layer-2 USDT perpetuals in the world (see ``build_catalogue``).
            signal: plant the order-flow signal of the module docstring (fixed for the market's
                life: candles are cached).

        Raises:
            ValueError: a clock before the epoch or past the ten-year horizon, or a bad `n_symbols`.
        """
        self.seed = int(seed)
        self.signal = bool(signal)
        self._fixed_now_ms: int | None = None
        self.set_now(now)
        # Mid-history listings are placed relative to the day the market was created, so "listed
        # within the last 60 days" stays true whenever the simulator runs.
        self.reference_day_ms = (self.now_ms() // DAY_MS) * DAY_MS
        self.coins: tuple[SimCoin, ...] = build_catalogue(n_symbols)
        self._coin_by_id = {c.coingecko_id: c for c in self.coins}
        self._series: dict[str, SeriesSpec] = {}
        self._aliases: dict[str, str] = {}
        self.contracts: dict[str, ContractSpec] = {}
        self._adhoc: dict[tuple[str, str | None], ContractSpec] = {}
        self._lock = threading.Lock()
        self._daily_cache: dict[str, _Daily] = {}
        self._build_contracts()
        self._day_returns = functools.lru_cache(maxsize=_RETURNS_CACHE_SIZE)(self._make_day_returns)
        self._day_bars = functools.lru_cache(maxsize=_DAY_CACHE_SIZE)(self._make_day_bars)
        self._day_flow = functools.lru_cache(maxsize=_RETURNS_CACHE_SIZE)(self._make_day_flow)

    # ----------------------------------------------------------------------------------- clock
    def set_now(self, now: datetime | None) -> None:
        """Fix the market clock at `now` (UTC), or hand it back to the wall clock (``None``).

        Raises:
            ValueError: `now` before the epoch or past the horizon.
        """
        if now is None:
            self._fixed_now_ms = None
            return
        now_ms = _to_ms(now)
        if not EPOCH_MS <= now_ms < HORIZON_END_MS:
            raise ValueError(
                f"market clock {now.isoformat()} is outside {EPOCH.date()} + {HORIZON_DAYS} days"
            )
        self._fixed_now_ms = now_ms

    def now_ms(self) -> int:
        """The market clock, epoch milliseconds UTC."""
        fixed = self._fixed_now_ms
        return int(time.time() * 1000) if fixed is None else fixed

    def now(self) -> datetime:
        """The market clock as a tz-aware UTC datetime."""
        return datetime.fromtimestamp(self.now_ms() / 1000, tz=UTC)

    # ------------------------------------------------------------------------------- catalogue
    def coin(self, coingecko_id: str) -> SimCoin | None:
        """The catalogue entry with this CoinGecko id, or ``None``."""
        return self._coin_by_id.get(coingecko_id)

    def contract(self, symbol: str) -> ContractSpec | None:
        """The built-in Binance contract `symbol` (exact, case-sensitive), or ``None``."""
        return self.contracts.get(symbol)

    def series_spec(self, key: str) -> SeriesSpec:
        """Parameters of series `key` (aliases resolved). Raises ``KeyError`` for an unknown key."""
        return self._series[self._aliases.get(key, key)]

    def _add_series(self, spec: SeriesSpec) -> None:
        self._series[spec.key] = spec

    def _series_for_coin(self, coin: SimCoin, key: str) -> SeriesSpec:
        quoted = coin.price_usd * coin.contract_size
        return SeriesSpec(
            key=key,
            anchor_price=quoted,
            annual_vol=coin.annual_vol,
            beta=coin.beta,
            daily_volume_usd=coin.volume_usd,
            # Bigger markets trade in bigger clips: ~150 USD a trade at 10 M/day, ~1.8 k at 12 B/day.
            trade_size_usd=150.0 * (max(coin.volume_usd, 1e6) / 1e7) ** 0.35,
            qty_decimals=qty_decimals_for(quoted),
        )

    @staticmethod
    def _perp(
        symbol: str,
        base: str,
        series: str,
        price: float,
        *,
        onboard_ms: int | None = None,
        pair: str | None = None,
        contract_type: str = "PERPETUAL",
        quote: str = "USDT",
        delivery_ms: int = PERPETUAL_DELIVERY_MS,
        delisted: bool = False,
        sub_type: Sequence[str] = (),
    ) -> ContractSpec:
        if onboard_ms is None:
            # Listed before the epoch: the real date for the first two, else a fixed date in
            # 2019-2024 that looks like a real listing.
            onboard_ms = _EARLY_LISTINGS_MS.get(symbol) or (
                1_569_398_400_000 + int(unit_hash("onboard:" + symbol) * 1800) * DAY_MS
            )
        return ContractSpec(
            symbol=symbol,
            pair=pair or symbol,
            contract_type=contract_type,
            base_asset=base,
            quote_asset=quote,
            series=series,
            onboard_ms=onboard_ms,
            delivery_ms=delivery_ms,
            delisted=delisted,
            price_decimals=price_decimals_for(price),
            qty_decimals=qty_decimals_for(price),
            sub_type=tuple(sub_type),
        )

    def _build_contracts(self) -> None:
        for coin in self.coins:
            if coin.tracks is not None:
                continue  # priced off the coin it tracks
            key = coin.binance_symbol or f"cg:{coin.coingecko_id}"
            self._add_series(self._series_for_coin(coin, key))
            if coin.binance_symbol is None:
                continue
            onboard_ms = (
                None
                if coin.onboard_days_ago is None
                else self.reference_day_ms - coin.onboard_days_ago * DAY_MS
            )
            sub_type = [
                tag
                for cat, tag in (("layer-1", "Layer-1"), ("layer-2", "Layer-2"), ("meme-token", "Meme"))
                if cat in coin.categories
            ]
            self.contracts[coin.binance_symbol] = self._perp(
                coin.binance_symbol,
                coin.binance_base or coin.binance_symbol.removesuffix("USDT"),
                coin.binance_symbol,
                coin.price_usd * coin.contract_size,
                onboard_ms=onboard_ms,
                delisted=coin.delisted,
                sub_type=sub_type,
            )
        # Binance-only contracts: a USDC-margined BTC perpetual and BTC quarterly deliveries trade on
        # the BTC path (basis ignored).
        btc = self._coin_by_id["bitcoin"].price_usd
        self._aliases["BTCUSDC"] = MARKET_SERIES
        self.contracts["BTCUSDC"] = self._perp(
            "BTCUSDC", "BTC", MARKET_SERIES, btc, quote="USDC", onboard_ms=1_705_305_600_000
        )
        for delivery_ms, kind in zip(
            _quarter_deliveries(self.reference_day_ms, 2), ("CURRENT_QUARTER", "NEXT_QUARTER"), strict=True
        ):
            symbol = "BTCUSDT_" + datetime.fromtimestamp(delivery_ms / 1000, tz=UTC).strftime("%y%m%d")
            self._aliases[symbol] = MARKET_SERIES
            self.contracts[symbol] = self._perp(
                symbol,
                "BTC",
                MARKET_SERIES,
                btc,
                pair="BTCUSDT",
                contract_type=kind,
                delivery_ms=delivery_ms,
                onboard_ms=delivery_ms - 180 * DAY_MS,
            )

    def adhoc_contract(self, raw: str, base_asset: str | None = None) -> ContractSpec:
        """A USDT perpetual for an odd or hostile symbol text (``"BAD|SYM"``, ``"../../etc"``...).

        It trades on a path of its own, seeded by the text, at a high volume so that only symbol
        validation can keep it out of a universe.
        """
        cache_key = (raw, base_asset)
        with self._lock:
            found = self._adhoc.get(cache_key)
            if found is not None:
                return found
            key = f"adhoc:{raw}"
            price = 10 ** (-1 + 3 * unit_hash("adhoc-price:" + raw))
            if key not in self._series:
                self._add_series(SeriesSpec(key, price, 0.9, 1.0, 2e9, 800.0, qty_decimals_for(price)))
            spec = self._perp(
                raw,
                base_asset if base_asset is not None else raw.removesuffix("USDT"),
                key,
                price,
                onboard_ms=EPOCH_MS,
            )
            self._adhoc[cache_key] = spec
            return spec

    # ----------------------------------------------------------------------------- generation
    def _rng(self, key: str, stream: int, day: int = 0) -> np.random.Generator:
        # One independent stream per (seed, series, purpose, day): a day never depends on which other
        # days were generated before it.
        entropy = [self.seed % 2**63, stable_id(key), stream, day]
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))

    def _daily(self, key: str) -> _Daily:
        key = self._aliases.get(key, key)
        found = self._daily_cache.get(key)
        if found is not None:
            return found
        spec = self._series[key]
        market = None if key == MARKET_SERIES else self._daily(MARKET_SERIES)
        rng = self._rng(key, _DAILY_STREAM)
        logvol = lfilter([1.0], [1.0, -_DAILY_PHI], rng.normal(0.0, _DAILY_ETA, HORIZON_DAYS))
        shocks = rng.standard_t(STUDENT_DF, HORIZON_DAYS) / _T_SCALE
        volume_noise = rng.normal(0.0, 0.15, HORIZON_DAYS)
        base_sd = spec.annual_vol / math.sqrt(365.0)
        clustering = np.exp(logvol - _DAILY_LOGVOL_VAR)  # E[clustering**2] == 1
        if market is None:
            idio_sigma = base_sd * clustering
            shock = idio_sigma * shocks
            sigma = idio_sigma
        else:
            market_sd = self._series[MARKET_SERIES].annual_vol / math.sqrt(365.0)
            # A coin's own risk is what its total volatility leaves after the BTC part (at least a
            # third of it, so no coin is a pure BTC copy).
            own_sd = math.sqrt(max(base_sd**2 - (spec.beta * market_sd) ** 2, (0.35 * base_sd) ** 2))
            idio_sigma = own_sd * clustering
            shock = spec.beta * market.shock + idio_sigma * shocks
            sigma = np.sqrt((spec.beta * market.sigma) ** 2 + idio_sigma**2)
        deviation = lfilter([1.0], [1.0, -(1.0 - MEAN_REVERSION_PER_DAY)], shock)
        level = math.log(spec.anchor_price) + np.concatenate(([0.0], deviation))
        volume_factor = np.exp(0.8 * logvol + volume_noise - 0.5 * (0.64 * _DAILY_LOGVOL_VAR + 0.0225))
        daily = _Daily(level, shock, sigma, idio_sigma, volume_factor)
        with self._lock:
            self._daily_cache[key] = daily
        return daily

    def _make_day_returns(self, key: str, day: int) -> np.ndarray:
        """The 288 five-minute log returns of UTC day `day` (days since the epoch); they sum to the
        day's return exactly."""
        spec = self._series[key]
        daily = self._daily(key)
        target = daily.level[day + 1] - daily.level[day]
        rng = self._rng(key, _RETURNS_STREAM, day)
        t_draws = rng.standard_t(STUDENT_DF, BARS_PER_DAY) / _T_SCALE
        logvol = lfilter([1.0], [1.0, -_BAR_PHI], rng.normal(0.0, _BAR_ETA, BARS_PER_DAY))
        bar_sd = (
            daily.idio_sigma[day] / math.sqrt(BARS_PER_DAY) * _VOL_PROFILE * np.exp(logvol - _BAR_LOGVOL_VAR)
        )
        own = bar_sd * t_draws
        if self.signal:
            own += SIGNAL_RETURN_SHARE * bar_sd * self._flow_lagged(key, day)
        if key == MARKET_SERIES or spec.beta == 0.0:
            common = np.zeros(BARS_PER_DAY)
        else:
            market = self._daily(MARKET_SERIES)
            common = spec.beta * self._day_returns(MARKET_SERIES, day)
            target -= spec.beta * (market.level[day + 1] - market.level[day])
        # Brownian-bridge-like correction: spread the gap to the day's target over the bars in
        # proportion to their variance, so quiet bars stay quiet.
        weights = bar_sd**2 / np.sum(bar_sd**2)
        own += (target - own.sum()) * weights
        returns = common + own
        returns.flags.writeable = False
        return returns

    def _make_day_flow(self, key: str, day: int) -> np.ndarray:
        """The planted signal's 288 flow shocks of UTC day `day`, N(0, 1) (zeros before the epoch)."""
        if day < 0:
            flow = np.zeros(BARS_PER_DAY)
        else:
            flow = self._rng(key, _FLOW_STREAM, day).standard_normal(BARS_PER_DAY)
        flow.flags.writeable = False
        return flow

    def _flow_lagged(self, key: str, day: int) -> np.ndarray:
        """Per bar of `day`, the flow shock of the bar ``SIGNAL_LAG_BARS`` earlier (the day before
        included): N(0, 1), known an hour before the bar opens."""
        lag = SIGNAL_LAG_BARS
        return np.concatenate((self._day_flow(key, day - 1)[-lag:], self._day_flow(key, day)[:-lag]))

    def _make_day_bars(self, key: str, day: int) -> np.ndarray:
        """The 288 x 9 candle matrix of UTC day `day` (columns OPEN ... TAKER_QUOTE)."""
        spec = self._series[key]
        daily = self._daily(key)
        returns = self._day_returns(key, day)
        rng = self._rng(key, _FIELDS_STREAM, day)
        start, end = daily.level[day], daily.level[day + 1]
        log_close = start + np.cumsum(returns)
        log_close[-1] = end  # the next day opens on exactly this value
        log_open = np.empty(BARS_PER_DAY)
        log_open[0] = start
        log_open[1:] = log_close[:-1]
        open_, close = np.exp(log_open), np.exp(log_close)
        bar_sd = daily.sigma[day] / math.sqrt(BARS_PER_DAY) * _VOL_PROFILE
        high = np.maximum(open_, close) * np.exp(0.6 * bar_sd * rng.exponential(1.0, BARS_PER_DAY))
        low = np.minimum(open_, close) * np.exp(-0.6 * bar_sd * rng.exponential(1.0, BARS_PER_DAY))
        average = (open_ + high + low + close) / 4.0
        surprise = np.abs(returns) / bar_sd  # |return| in bar standard deviations (mean ~0.8)
        quote = (
            spec.daily_volume_usd
            / BARS_PER_DAY
            * daily.volume_factor[day]
            * _VOLUME_PROFILE
            * np.exp(0.35 * (surprise - 0.8) + rng.normal(0.0, 0.25, BARS_PER_DAY) - 0.03125)
        )
        lot = 10.0**-spec.qty_decimals
        volume = np.maximum(quote / average, lot)
        trades = np.maximum(
            1.0, np.rint(quote / spec.trade_size_usd * np.exp(rng.normal(0.0, 0.2, BARS_PER_DAY)))
        )
        # Takers buy more in up bars: 40-60 % of the volume (30-70 % with the planted flow).
        taker_share = 0.5 + 0.06 * np.tanh(returns / bar_sd) + rng.normal(0.0, 0.02, BARS_PER_DAY)
        if self.signal:
            taker_share += SIGNAL_TAKER_SHARE * self._day_flow(key, day)
        taker_share = np.clip(taker_share, *(_TAKER_CLIP_SIGNAL if self.signal else _TAKER_CLIP))
        taker = volume * taker_share
        bars = np.empty((BARS_PER_DAY, _N_COLUMNS))
        bars[:, OPEN], bars[:, HIGH], bars[:, LOW], bars[:, CLOSE] = open_, high, low, close
        bars[:, VOLUME], bars[:, QUOTE_VOLUME], bars[:, TRADES] = volume, volume * average, trades
        bars[:, TAKER_BASE], bars[:, TAKER_QUOTE] = taker, taker * average
        bars.flags.writeable = False
        return bars

    def bars_5m(self, series: str, first: int, last: int) -> np.ndarray:
        """Full (closed-form) 5m bars with global indices ``first..last`` inclusive (index 0 opens at
        the epoch), as an ``(n, 9)`` matrix. Existence is not checked here."""
        key = self._aliases.get(series, series)
        day_lo, day_hi = first // BARS_PER_DAY, last // BARS_PER_DAY
        if day_lo == day_hi:
            return self._day_bars(key, day_lo)[first % BARS_PER_DAY : last % BARS_PER_DAY + 1]
        stacked = np.concatenate([self._day_bars(key, d) for d in range(day_lo, day_hi + 1)])
        offset = day_lo * BARS_PER_DAY
        return stacked[first - offset : last - offset + 1]

    # --------------------------------------------------------------------------------- serving
    def _partial(self, bar: np.ndarray, fraction: float, qty_decimals: int) -> np.ndarray:
        """The forming bar `fraction` of the way through: moves in log space from open toward the
        bar's final close, range and volumes grow with the fraction."""
        out = bar.copy()
        o = bar[OPEN]
        c = o * (bar[CLOSE] / o) ** fraction
        top, bottom = max(bar[OPEN], bar[CLOSE]), min(bar[OPEN], bar[CLOSE])
        out[CLOSE] = c
        out[HIGH] = max(o, c) * (bar[HIGH] / top) ** fraction
        out[LOW] = min(o, c) * (bar[LOW] / bottom) ** fraction
        lot = 10.0**-qty_decimals
        scale = max(fraction, 1e-3)
        out[VOLUME] = max(bar[VOLUME] * scale, lot)
        out[QUOTE_VOLUME] = out[VOLUME] * bar[QUOTE_VOLUME] / bar[VOLUME]
        out[TRADES] = max(1.0, math.floor(bar[TRADES] * scale))
        out[TAKER_BASE] = out[VOLUME] * bar[TAKER_BASE] / bar[VOLUME]
        out[TAKER_QUOTE] = out[TAKER_BASE] * bar[TAKER_QUOTE] / bar[TAKER_BASE]
        return out

    def klines(
        self,
        contract: ContractSpec | str,
        *,
        interval: str = "5m",
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
        gaps: Sequence[tuple[int, int]] = (),
        now_ms: int | None = None,
    ) -> Candles:
        """Candles with Binance ``/fapi/v1/klines`` semantics.

        With `start_ms`: candles with ``open_time >= start_ms`` (and ``<= end_ms`` if given),
        ascending, the first `limit` of them. With only `end_ms`: the last `limit` candles with
        ``open_time <= end_ms``. With neither: the latest `limit`. Candles open no earlier than the
        listing and the epoch and no later than the clock; the forming candle is included with
        partial values. A 5m bar whose open time lies in a gap ``[start, end)`` (ms) does not exist;
        a coarser candle exists while any of its 5m bars does.

        Args:
            contract: a contract spec, or a built-in contract's symbol.
            interval: one of :data:`INTERVALS_MS`.
            limit: at most this many candles (>= 1).
            now_ms: the clock to use (default the market clock).

        Raises:
            KeyError: unknown interval or symbol.
        """
        spec = self.contracts[contract] if isinstance(contract, str) else contract
        step = INTERVALS_MS[interval]
        k = step // FIVE_MINUTES_MS
        now = self.now_ms() if now_ms is None else now_ms
        first_ms = max(EPOCH_MS, spec.onboard_ms)
        last_ms = min(now, HORIZON_END_MS - 1)
        if end_ms is not None:
            last_ms = min(last_ms, end_ms)
        # Slots are candle indices since the epoch; a slot exists if one of its 5m bars exists.
        lo = (first_ms - EPOCH_MS) // step
        if start_ms is not None:
            lo = max(lo, -((EPOCH_MS - start_ms) // step))  # ceil: open_time >= start_ms
        hi = (last_ms - EPOCH_MS) // step
        if hi < lo or limit < 1:
            return _empty_candles()
        gap_bars = _gap_bar_ranges(gaps)
        spare = sum(b - a for a, b in gap_bars) // k + len(gap_bars) + 1  # slots gaps can remove
        if start_ms is not None:
            hi = min(hi, lo + limit + spare - 1)
        else:
            lo = max(lo, hi - limit - spare + 1)
        bar_lo = max(lo * k, (first_ms - EPOCH_MS) // FIVE_MINUTES_MS)
        bar_hi = min(hi * k + k - 1, (last_ms - EPOCH_MS) // FIVE_MINUTES_MS)
        if bar_hi < bar_lo:
            return _empty_candles()
        bars = self.bars_5m(spec.series, bar_lo, bar_hi)
        index = np.arange(bar_lo, bar_hi + 1)
        keep = np.ones(len(index), dtype=bool)
        for a, b in gap_bars:
            keep &= (index < a) | (index >= b)
        forming_ms = now - (EPOCH_MS + bar_hi * FIVE_MINUTES_MS)
        if forming_ms < FIVE_MINUTES_MS and keep[-1]:
            bars = bars.copy()
            bars[-1] = self._partial(
                bars[-1], forming_ms / FIVE_MINUTES_MS, self.series_spec(spec.series).qty_decimals
            )
        if not keep.all():
            bars, index = bars[keep], index[keep]
        if len(index) == 0:
            return _empty_candles()
        if k == 1:
            slots = index
            agg = bars
        else:
            slot_of = index // k
            starts = np.flatnonzero(np.r_[True, slot_of[1:] != slot_of[:-1]])
            ends = np.r_[starts[1:], len(index)] - 1
            slots = slot_of[starts]
            agg = np.empty((len(starts), _N_COLUMNS))
            agg[:, OPEN] = bars[starts, OPEN]
            agg[:, CLOSE] = bars[ends, CLOSE]
            agg[:, HIGH] = np.maximum.reduceat(bars[:, HIGH], starts)
            agg[:, LOW] = np.minimum.reduceat(bars[:, LOW], starts)
            for col in (VOLUME, QUOTE_VOLUME, TRADES, TAKER_BASE, TAKER_QUOTE):
                agg[:, col] = np.add.reduceat(bars[:, col], starts)
        if len(slots) > limit:
            pick = slice(0, limit) if start_ms is not None else slice(len(slots) - limit, None)
            slots, agg = slots[pick], agg[pick]
        open_time = EPOCH_MS + slots.astype(np.int64) * step
        return Candles(
            open_time=open_time,
            close_time=open_time + (step - 1),
            open=agg[:, OPEN],
            high=agg[:, HIGH],
            low=agg[:, LOW],
            close=agg[:, CLOSE],
            volume=agg[:, VOLUME],
            quote_volume=agg[:, QUOTE_VOLUME],
            trades=agg[:, TRADES].astype(np.int64),
            taker_buy_volume=agg[:, TAKER_BASE],
            taker_buy_quote_volume=agg[:, TAKER_QUOTE],
        )

    def window_24h(self, series: str, *, onboard_ms: int = EPOCH_MS, now_ms: int | None = None) -> Window24h:
        """The last 288 5m bars of `series` up to the clock (forming bar included, partial)."""
        now = self.now_ms() if now_ms is None else now_ms
        last = (min(now, HORIZON_END_MS - 1) - EPOCH_MS) // FIVE_MINUTES_MS
        first = max(last - BARS_PER_DAY + 1, 0, -((EPOCH_MS - onboard_ms) // FIVE_MINUTES_MS))
        if now < max(EPOCH_MS, onboard_ms) or last < first:
            return Window24h(now - DAY_MS, now, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0)
        bars = self.bars_5m(series, first, last).copy()
        fraction = (now - (EPOCH_MS + last * FIVE_MINUTES_MS)) / FIVE_MINUTES_MS
        bars[-1] = self._partial(bars[-1], fraction, self.series_spec(series).qty_decimals)
        return Window24h(
            open_time_ms=now - DAY_MS,
            close_time_ms=now,
            open=float(bars[0, OPEN]),
            high=float(bars[:, HIGH].max()),
            low=float(bars[:, LOW].min()),
            last=float(bars[-1, CLOSE]),
            volume=float(bars[:, VOLUME].sum()),
            quote_volume=float(bars[:, QUOTE_VOLUME].sum()),
            trades=int(bars[:, TRADES].sum()),
            bars=len(bars),
        )

    def coin_quote(self, coin: SimCoin, *, now_ms: int | None = None) -> CoinQuote:
        """Price (USD per ONE coin), 24h range and 24h volume (USD) of `coin`, as CoinGecko sees it.

        A coin listed on Binance is priced off its contract's path (divided by the contract size);
        CoinGecko aggregates many venues, so its volume is the Binance 24h quote volume times a
        fixed per-coin factor (1.2-3.0). Tracked coins (WBTC, stETH...) follow the coin they wrap.
        """
        now = self.now_ms() if now_ms is None else now_ms
        if coin.tracks is not None:
            base = self._coin_by_id[coin.tracks]
            quote = self.coin_quote(base, now_ms=now)
            base_key = base.binance_symbol or f"cg:{base.coingecko_id}"
            activity = quote.volume_usd / (
                self._cg_factor(base) * self.series_spec(base_key).daily_volume_usd
            )
            p = coin.peg
            return CoinQuote(
                quote.price * p,
                quote.open_24h * p,
                quote.high_24h * p,
                quote.low_24h * p,
                coin.volume_usd * activity,
            )
        key = coin.binance_symbol or f"cg:{coin.coingecko_id}"
        window = self.window_24h(key, now_ms=now)  # CoinGecko saw the coin trade before Binance listed it
        size = coin.contract_size
        factor = self._cg_factor(coin)
        return CoinQuote(
            window.last / size,
            window.open / size,
            window.high / size,
            window.low / size,
            window.quote_volume * factor,
        )

    @staticmethod
    def _cg_factor(coin: SimCoin) -> float:
        if coin.binance_symbol is None or STABLECOINS in coin.categories:
            return 1.0
        return 1.2 + 1.8 * unit_hash("cg-volume:" + coin.coingecko_id)

    def candles(self, symbol: str, start: datetime, end: datetime, *, interval: str = "5m") -> pd.DataFrame:
        """CLOSED candles of built-in contract `symbol` with open_time in ``[start, end)`` (UTC).

        The reference answer for tests of the collectors: columns as the ``ohlcv`` table
        (``open_time`` naive UTC ``datetime64[ms]``), values as the venue sends them before
        rounding to the payload's decimals. No gaps are applied (gaps are faults of the server).

        Raises:
            KeyError: unknown symbol or interval.
        """
        spec = self.contracts[symbol]
        step = INTERVALS_MS[interval]
        start_ms, end_ms = _to_ms(start), _to_ms(end)
        now = self.now_ms()
        frames: list[Candles] = []
        cursor = start_ms
        while cursor < end_ms:
            block = self.klines(
                spec, interval=interval, start_ms=cursor, end_ms=end_ms - 1, limit=1500, now_ms=now
            )
            if len(block) == 0:
                break
            frames.append(block)
            cursor = int(block.open_time[-1]) + step
        block = _concat(frames) if frames else _empty_candles()
        closed = block.close_time < now
        # Candles fields carry the ohlcv column names (close_time excepted, which ohlcv drops).
        columns = {f.name: getattr(block, f.name)[closed] for f in fields(Candles) if f.name != "close_time"}
        open_time = columns.pop("open_time").astype("datetime64[ms]")
        return pd.DataFrame({"exchange": "binance", "symbol": symbol, "open_time": open_time, **columns})


def _gap_bar_ranges(gaps: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Gaps ``[start_ms, end_ms)`` as half-open ranges of 5m bar indices whose open time falls inside."""
    out: list[tuple[int, int]] = []
    for start_ms, end_ms in gaps:
        a = -((EPOCH_MS - start_ms) // FIVE_MINUTES_MS)  # first bar opening at or after start
        b = -((EPOCH_MS - end_ms) // FIVE_MINUTES_MS)  # first bar opening at or after end
        if b > a:
            out.append((a, b))
    return out


def _concat(blocks: Sequence[Candles]) -> Candles:
    return Candles(*(np.concatenate([getattr(b, f.name) for b in blocks]) for f in fields(Candles)))


def _empty_candles() -> Candles:
    ints, floats = np.array([], dtype=np.int64), np.array([], dtype=np.float64)
    return Candles(ints, ints, floats, floats, floats, floats, floats, floats, ints, floats, floats)
