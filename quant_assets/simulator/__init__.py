"""A local exchange simulator: Binance USD-M futures and CoinGecko over real HTTP on 127.0.0.1.

The demo, the tests and the benchmarks talk to it through the production clients, so it answers
the venues' paths with their payload shapes, types, error codes and rate-limit behaviour.

**Endpoints.** Binance (base :attr:`Simulator.url`): ``/fapi/v1/ping``, ``/time``,
``/exchangeInfo``, ``/ticker/24hr`` (all symbols, weight 40, or one ``symbol``, weight 1) and
``/klines`` (intervals 5m ... 1d; ``startTime``/``endTime``/``limit`` with Binance's semantics and
weights; the still-forming candle included). CoinGecko (base :attr:`Simulator.coingecko_url`,
``.../api/v3``): ``/ping``, ``/coins/markets`` (``vs_currency=usd``, ``order``, ``per_page``,
``page``, ``category``, ``ids``), ``/coins/list``, ``/coins/categories/list``.

**Catalogue** (:mod:`quant_assets.simulator.catalog`). ``n_symbols`` (default 120) Layer-1/Layer-2
coins with a TRADING USDT perpetual: real ones with their real CoinGecko ids and Binance symbols
(``POLUSDT``, ``1000XECUSDT``, ``1000LUNCUSDT``, ``LUNA2USDT``, ``BEAMXUSDT``...), then synthetic
chains; seven of them listed within the last 60 days (no candles before ``onboardDate``). Plus the
traps a universe rule must handle: ticker collisions (``doge`` x3, ``op`` x2, ``weth`` x2; the
impostors ``binance-peg-dogecoin`` and ``optio-network`` are filed under layer-1/layer-2 with high
volume), stablecoins (``first-digital-usd`` also under layer-1, and Binance ``USDCUSDT`` /
``FDUSDUSDT`` perpetuals with high volume), wrapped / bridged / liquid-staking tokens, meme coins
on ``1000...`` contracts, a delisted ``FTMUSDT`` (``SETTLING``), a ``BTCUSDC`` perpetual and BTC
quarterly deliveries (``BTCUSDT_YYMMDD``, ``CURRENT_QUARTER``/``NEXT_QUARTER``).

**Clock.** ``now=None`` follows the wall clock; a fixed ``now`` freezes the market (which candle is
forming, what the 24h figures are) for deterministic tests; ``sim.market.set_now()`` moves it.
Candles are a pure function of ``(seed, symbol, open_time)`` from the epoch 2025-01-01 00:00 UTC:
the same whatever range is asked and whatever the clock says. The rate limiter always runs on the
wall clock (``time.time()``).

**Planted signal** (``Simulator(signal=True)``, ``quant-assets simulator --signal``, the tests'
``signal_simulator`` fixture; off by default). Off, returns hold no serial structure a model could
learn. On, each bar's taker-buy flow (seen in the taker-buy share) moves the own return of the bar an
hour later: the feature ``taker_buy_ratio_12`` then predicts ``fwd_ret_12`` (cross-sectional IC
0.26 +- 0.01 on 8 symbols x 30 days), while the last hour's return still predicts nothing. Sizes and measurements are in
:mod:`quant_assets.simulator.market`.

**Faults** (:class:`Faults`, ``sim.faults``): ``fail_next`` (any status, optional ``Retry-After``
and body), ``timeout_next`` (stall), ``truncate_next`` (half a body under a full Content-Length),
``gap`` (candles that never exist), ``delist``, ``add_symbol`` (hostile symbol texts),
``coingecko_down``; ``clear()`` resets them. With ``weight_limit`` set, Binance's rule applies: 429
with ``Retry-After`` over the limit, 418 ban for a client that comes back too early.
``sim.stats`` (:class:`SimStats`) counts requests, statuses, weight, 429s and 418s, and keeps the
klines queries and the last request headers per venue.
"""

from __future__ import annotations

from quant_assets.simulator.catalog import ContractSpec, SimCoin
from quant_assets.simulator.faults import Faults
from quant_assets.simulator.market import EPOCH, Candles, Market
from quant_assets.simulator.server import RateLimiter, SimStats, Simulator, run_server

__all__ = [
    "EPOCH",
    "Candles",
    "ContractSpec",
    "Faults",
    "Market",
    "RateLimiter",
    "SimCoin",
    "SimStats",
    "Simulator",
    "run_server",
]
