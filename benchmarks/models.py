"""Benchmark: the models on the full table (100 symbols x 90 days of features joined to labels).

Sections, each a function, run in order by :func:`main` (``--sections`` picks some):

* ``trees`` - XGBoost and LightGBM in a child process each (so each peak RSS is its own): the
  panel read from the lake (:func:`~quant_assets.models.data.load_panel`), then
  :func:`~quant_assets.models.training.train` as the model assets call it (90-day window, 70/15/15
  split, early stopping on validation, test vs both baselines, bootstrap, artifact, registry), and
  then (unless ``--no-reference``) the reference fit: 200 rounds on every row of the table (2.59 M x 85) without early stopping, the
  figure the issue compares with (LightGBM 55 s, XGBoost hist 77 s on 2.59 M x 55) [<= 120 s each,
  peak RSS <= 8 GiB];
* ``torch`` - N-HiTS and PatchTST in a child process each: seconds per training step at
  neuralforecast 3.3's configuration (its defaults except h=12, input_size=96, 32 series and 1,024
  windows a step, MAE loss; the series are the table's first 32 symbols), against neuralforecast's
  0.58 s (N-HiTS) and 1.22 s (PatchTST) here [targets 4x and 1.5x faster: <= 0.145 s, <= 0.81 s],
  the same at the model's full configuration, then :func:`~quant_assets.models.training.train` at
  the full configuration on the whole table [<= 300 s each: the fit's wall-time budget];
* ``inference`` - the live path (``latest_predictions``) for the 100 symbols x 4 models from the
  store [<= 1 s], and ``predict_day`` of the last day; models the store lacks get a small version.

The table: the simulator's market (deterministic candles, ``benchmarks/features.py``'s
``universe_candles``) for 100 symbols over 90 days plus the feature warm-up, stored as the ``ohlcv``
asset stores it (``write_lake``), then every day of ``feature_table`` and ``labels`` built and written
as those assets do (:mod:`quant_assets.feature_days`). Building it takes a few minutes; ``--data DIR``
keeps it in DIR and reuses it on the next run (a marker file names its size).

Figures depend on what else runs: the machine's load average is printed before each section.

Run: ``.venv/bin/python benchmarks/models.py [--sections trees,torch,inference] [--symbols 100]
[--days 90] [--data DIR]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is no package

from quant_assets import feature_days
from quant_assets.models.base import TimeRange
from quant_assets.store.lake import Lake

MARKER = "models-bench.json"
TREE_MODELS = ("xgboost", "lightgbm")


# ----------------------------------------------------------------------------------------- table
def build_table(root: Path, symbols: int, days: int) -> tuple[Lake, dt.date, dt.date]:
    """The lake of `symbols` x `days` days of candles, features and labels under `root` (reused when
    `root` holds one of that size); returns it and its first and last feature day."""
    marker = root / MARKER
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved["symbols"] == symbols and saved["days"] == days:
            first, last = dt.date.fromisoformat(saved["first"]), dt.date.fromisoformat(saved["last"])
            print(f"table: reusing {root} ({symbols} symbols x {days} days, {first}..{last})")
            return Lake(root), first, last
    from features import universe_candles, write_lake  # benchmarks/features.py

    started = time.perf_counter()
    warm = feature_days.warmup_days()
    candles = universe_candles(symbols, days + warm + 1)
    lake, stored_days = write_lake(root, candles)
    # The first `warm` days are warm-up only; the last day is only the label's future.
    feature_range = stored_days[warm : warm + days]
    reader = feature_days.DayReader(lake)
    for day in feature_range:
        feature_days.write_feature_day(lake, feature_days.build_feature_day(lake, day, reader=reader))
    reader = feature_days.DayReader(lake)
    for day in feature_range:
        feature_days.write_label_day(lake, feature_days.build_label_day(lake, day, reader=reader))
    first, last = feature_range[0], feature_range[-1]
    marker.write_text(
        json.dumps({"symbols": symbols, "days": len(feature_range), "first": str(first), "last": str(last)})
    )
    print(
        f"table: built {len(feature_range)} feature and label days in {time.perf_counter() - started:.0f} s"
    )
    return lake, first, last


def peak_rss_mib() -> float:
    """This process's resident-set high-water mark."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


# ----------------------------------------------------------------------------------------- trees
def tree_child(
    model: str, data: Path, first: dt.date, last: dt.date, *, reference: bool = True
) -> dict[str, float]:
    """In a child process: train() one version (its peak RSS is the model's), then read the panel
    alone, then (`reference`) the 200-round fit on every row."""
    from quant_assets.models import MODELS
    from quant_assets.models.data import load_panel
    from quant_assets.models.training import train

    lake = Lake(data)
    days = (last - first).days + 1
    figures: dict[str, float] = {}

    started, cpu = time.perf_counter(), time.process_time()
    result = train(lake, model, end_day=last, days=days)
    figures["train_s"] = time.perf_counter() - started
    figures["train_cpu_s"] = time.process_time() - cpu
    figures["fit_s"] = result.fit["seconds"]
    figures["train_rows"] = result.fit["train_rows"]
    figures["best_iteration"] = result.fit["best_iteration"]
    figures["rounds"] = result.fit["rounds"]
    figures["ic"] = float(result.metrics["ic"])
    figures["promoted"] = float(result.promoted)
    figures["train_rss_mib"] = peak_rss_mib()
    del result

    started, cpu = time.perf_counter(), time.process_time()
    loaded = load_panel(lake, first, last + dt.timedelta(days=1))
    figures["load_s"] = time.perf_counter() - started
    figures["load_cpu_s"] = time.process_time() - cpu
    figures["rows"] = len(loaded.panel.frame)
    figures["features"] = len(loaded.panel.features)

    figures["reference_fit_s"] = figures["reference_cpu_s"] = float("nan")
    figures["reference_rows"] = figures["reference_rounds"] = float("nan")
    if reference:
        cls = MODELS[model]
        config = cls.config_type(num_boost_round=200, early_stopping_rounds=10_000)
        everything = TimeRange(
            dt.datetime.combine(first, dt.time()), dt.datetime.combine(last + dt.timedelta(days=1), dt.time())
        )
        last_day = TimeRange(everything.end - dt.timedelta(days=1), everything.end)
        started, cpu = time.perf_counter(), time.process_time()
        fit = cls(config).fit(loaded.panel, everything, last_day)
        figures["reference_fit_s"] = time.perf_counter() - started
        figures["reference_cpu_s"] = time.process_time() - cpu
        figures["reference_rows"] = fit["train_rows"]
        figures["reference_rounds"] = fit["rounds"]
    figures["peak_rss_mib"] = peak_rss_mib()
    return figures


def trees(args: argparse.Namespace, data: Path, first: dt.date, last: dt.date) -> None:
    """XGBoost and LightGBM on the full table, each in its own process."""
    print(f"\n== trees ({load()})")
    header = (
        f"{'model':<9}{'panel read':>11}{'train()':>9}{'fit':>8}{'rounds':>8}{'test IC':>9}"
        f"{'200 rounds, all rows':>22}{'train() peak RSS':>18}"
    )
    print(header)
    for model in TREE_MODELS:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                model,
                "--data",
                str(data),
                "--first",
                str(first),
                "--last",
                str(last),
                *(["--no-reference"] if args.no_reference else []),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"{model:<9}FAILED\n{done.stderr[-3000:]}")
            continue
        f = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{model:<9}{f['load_s']:>10.1f}s{f['train_s']:>8.1f}s{f['fit_s']:>7.1f}s"
            f"{f['best_iteration']:>4.0f}/{f['rounds']:<3.0f}{f['ic']:>9.4f}"
            f"{f['reference_fit_s']:>21.1f}s{f['train_rss_mib'] / 1024:>14.2f} GiB"
        )
        print(
            f"{'':<9}panel {f['rows']:,.0f} rows x {f['features']:.0f} features; fit on {f['train_rows']:,.0f} "
            f"train rows (best/rounds run); reference {f['reference_rows']:,.0f} rows x "
            f"{f['reference_rounds']:.0f} rounds; peak RSS with the reference fit "
            f"{f['peak_rss_mib'] / 1024:.2f} GiB; promoted {bool(f['promoted'])}"
        )
        print(
            f"{'':<9}CPU seconds (all threads): panel read {f['load_cpu_s']:.1f}, train() {f['train_cpu_s']:.1f}, "
            f"reference fit {f['reference_cpu_s']:.1f}; wall / CPU tells how much of two cores it had"
        )


# ----------------------------------------------------------------------------------------- torch
TORCH_MODELS = ("nhits", "patchtst")
# neuralforecast 3.3 on this machine, seconds per training step (defaults except h=12,
# input_size=96, 32 series, 1,024 windows a step, MAE loss), and the targets: 4x and 1.5x faster.
NEURALFORECAST_STEP_S = {"nhits": 0.58, "patchtst": 1.22}
STEP_TARGET_S = {"nhits": 0.58 / 4, "patchtst": 1.22 / 1.5}
STEP_SERIES = 32
STEPS_TIMED = 20


def torch_child(model: str, data: Path, first: dt.date, last: dt.date) -> dict[str, float]:
    """In a child process: seconds per step at neuralforecast's configuration on 32 series of the
    table (2 threads, then 1), then train() of one version at the full configuration (300 s budget)."""
    from dataclasses import replace

    import numpy as np

    from quant_assets.models import MODELS
    from quant_assets.models.base import Panel
    from quant_assets.models.data import load_panel
    from quant_assets.models.torch_training import step_timings
    from quant_assets.models.training import train

    lake = Lake(data)
    days = (last - first).days + 1
    figures: dict[str, float] = {}
    cls = MODELS[model]
    loaded = load_panel(lake, first, last + dt.timedelta(days=1))
    frame = loaded.panel.frame
    series = sorted(frame["symbol"].unique())[:STEP_SERIES]
    panel = Panel(frame[frame["symbol"].isin(series)].reset_index(drop=True), loaded.panel.schema)
    del loaded, frame
    everything = TimeRange(
        dt.datetime.combine(first, dt.time()), dt.datetime.combine(last + dt.timedelta(days=1), dt.time())
    )
    for label, config in (
        ("nf", cls.config_type.neuralforecast()),
        ("nf1", replace(cls.config_type.neuralforecast(), threads=1)),
        ("full", cls.config_type()),
    ):
        timings = step_timings(cls(config), panel, everything, steps=STEPS_TIMED)
        figures[f"{label}_step_median_s"] = float(np.median(timings.wall))
        figures[f"{label}_step_min_s"] = float(np.min(timings.wall))
        figures[f"{label}_step_cpu_s"] = float(np.median(timings.cpu))
    del panel
    figures["load_before_train"] = os.getloadavg()[0]

    started, cpu = time.perf_counter(), time.process_time()
    result = train(lake, model, end_day=last, days=days)
    figures["train_s"] = time.perf_counter() - started
    figures["train_cpu_s"] = time.process_time() - cpu
    for key in ("seconds", "steps", "best_step", "epochs", "train_rows", "stopped_by_time_budget"):
        figures[f"fit_{key}"] = float(result.fit[key])
    figures["ic"] = float(result.metrics["ic"])
    figures["promoted"] = float(result.promoted)
    figures["peak_rss_mib"] = peak_rss_mib()
    return figures


def torch(args: argparse.Namespace, data: Path, first: dt.date, last: dt.date) -> None:
    """N-HiTS and PatchTST: seconds per training step against neuralforecast 3.3, and train() on the
    full table at the full configuration, each model in its own process."""
    print(f"\n== torch ({load()})")
    print(
        f"{'model':<9}{'step (nf config)':>17}{'neuralforecast':>15}{'target':>8}{'step (full)':>12}"
        f"{'train()':>9}{'fit':>8}{'steps':>12}{'test IC':>9}{'peak RSS':>10}"
    )
    for model in TORCH_MODELS:
        f = _child(model, data, first, last)
        if f is None:
            continue
        met = "ok" if f["nf_step_median_s"] <= STEP_TARGET_S[model] else "MISSED"
        print(
            f"{model:<9}{f['nf_step_median_s']:>13.3f} s {met:<2}{NEURALFORECAST_STEP_S[model]:>13.2f} s"
            f"{STEP_TARGET_S[model]:>6.3f} s{f['full_step_median_s']:>10.3f} s{f['train_s']:>8.1f}s"
            f"{f['fit_seconds']:>7.1f}s{f['fit_best_step']:>6.0f}/{f['fit_steps']:<5.0f}{f['ic']:>9.4f}"
            f"{f['peak_rss_mib'] / 1024:>7.2f} GiB"
        )
        print(
            f"{'':<9}medians of {STEPS_TIMED} steps on {STEP_SERIES} series, 2 threads (fastest step: nf "
            f"{f['nf_step_min_s']:.3f} s, full {f['full_step_min_s']:.3f} s); CPU seconds per step (all "
            f"threads; the figure a busy machine leaves comparable): nf {f['nf_step_cpu_s']:.3f} s, nf on "
            f"1 thread {f['nf1_step_cpu_s']:.3f} s (wall {f['nf1_step_median_s']:.3f} s), full "
            f"{f['full_step_cpu_s']:.3f} s"
        )
        print(
            f"{'':<9}fit on {f['fit_train_rows']:,.0f} train rows, {f['fit_epochs']:.2f} epochs, stopped "
            f"by the time budget: {bool(f['fit_stopped_by_time_budget'])}; promoted {bool(f['promoted'])}; "
            f"load average before train() {f['load_before_train']:.1f}"
        )


def _child(model: str, data: Path, first: dt.date, last: dt.date) -> dict[str, float] | None:
    """Run this script's ``--child`` for `model`; its figures, or None (printed) when it failed."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            model,
            "--data",
            str(data),
            "--first",
            str(first),
            "--last",
            str(last),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"{model:<9}FAILED\n{done.stderr[-3000:]}")
        return None
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# ------------------------------------------------------------------------------------- inference
INFERENCE_REPEATS = 5
INFERENCE_TARGET_S = 1.0


def _ensure_versions(lake: Lake, first: dt.date, last: dt.date) -> list[str]:
    """Register a small version of each model the store lacks (trained on the days before `last`);
    returns the models trained here."""
    from quant_assets.models import MODEL_NAMES, MODELS
    from quant_assets.models.registry import versions
    from quant_assets.models.training import train

    trained = []
    for name in MODEL_NAMES:
        if versions(lake, name):
            continue
        days = min(4, (last - first).days)
        train(
            lake,
            name,
            end_day=last - dt.timedelta(days=1),
            days=days,
            config=MODELS[name].config_type.small(),
        )
        trained.append(name)
    return trained


def inference(args: argparse.Namespace, data: Path, first: dt.date, last: dt.date) -> None:
    """The live path for every symbol of the last day's universe x 4 models, from the store:
    :func:`~quant_assets.models.serving.latest_predictions` (each model's latest version loaded from
    its artifact, features from the candles through ``latest_features``), first call and the median of
    the next ones [<= 1 s]; then :func:`~quant_assets.models.serving.predict_day` of the last day for
    scale."""
    import numpy as np

    from quant_assets.models.data import universe_symbols
    from quant_assets.models.serving import latest_predictions, predict_day

    lake = Lake(data)
    print(f"\n== inference ({load()})")
    trained = _ensure_versions(lake, first, last)
    if trained:
        print(f"registered small versions of {', '.join(trained)} (the store had none)")
    symbols = universe_symbols(lake, last)
    as_of = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0, 0, 30), tzinfo=dt.UTC)
    times, cpu = [], []
    for _ in range(1 + INFERENCE_REPEATS):
        started, started_cpu = time.perf_counter(), time.process_time()
        live = latest_predictions(lake, symbols, as_of)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    warm = float(np.median(times[1:]))
    models = sorted(live["model"].unique())
    met = "ok" if warm <= INFERENCE_TARGET_S else "MISSED"
    print(
        f"latest_predictions: {live['symbol'].nunique()} symbols x {len(models)} models ({', '.join(models)}), "
        f"{len(live)} predictions: first call {times[0]:.3f} s, then median {warm:.3f} s "
        f"(fastest {min(times[1:]):.3f} s; CPU median {float(np.median(cpu[1:])):.3f} s) "
        f"[target <= {INFERENCE_TARGET_S:.0f} s: {met}]"
    )
    started = time.perf_counter()
    day = predict_day(lake, last)
    print(
        f"predict_day({last}): {len(day):,} predictions ({day['symbol'].nunique()} symbols x 288 candles x "
        f"{day['model'].nunique()} models) in {time.perf_counter() - started:.2f} s"
    )


SECTIONS: dict[str, Callable[[argparse.Namespace, Path, dt.date, dt.date], None]] = {
    "trees": trees,
    "torch": torch,
    "inference": inference,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS)
    )
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--data", type=Path, default=None, help="keep the table here and reuse it")
    parser.add_argument(
        "--no-reference", action="store_true", help="trees: skip the 200-round fit on every row"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--first", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--last", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_args = (
            args.child,
            args.data,
            dt.date.fromisoformat(args.first),
            dt.date.fromisoformat(args.last),
        )
        if args.child in TORCH_MODELS:
            figures = torch_child(*child_args)
        else:
            figures = tree_child(*child_args, reference=not args.no_reference)
        print(json.dumps(figures))
        return 0
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {list(SECTIONS)}")
    with tempfile.TemporaryDirectory(prefix="models-bench-") as tmp:
        data = args.data.resolve() if args.data is not None else Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        print(load())
        _, first, last = build_table(data, args.symbols, args.days)
        for name in chosen:
            SECTIONS[name](args, data, first, last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
