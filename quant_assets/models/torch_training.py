"""What N-HiTS and PatchTST share: windows from the feature library, scaling, the training loop, I/O.

A sequence model reads, for each (symbol, open_time) row, the window of the last ``input_size`` bars
of a few feature channels (:mod:`quant_assets.features.sequences`, the one window function, covered
by the feature schema hash) and forecasts the path of the next :data:`HORIZON_BARS` values of the
first channel, the 1-bar log return ``ret_1``. The path's sum is the prediction of ``fwd_ret_12``
(the 12-bar forward log return is the sum of the next 12 one-bar log returns).

Scaling: each channel is standardized with the mean and standard deviation of the training rows,
clipped to ``input_clip`` standard deviations, and a missing value (NaN: a feature's warm-up, a bar
without volume, a position before the symbol's first row) becomes 0, the channel's mean. The network
works in units of the standardized ``ret_1``; the statistics are buffers of the network, saved with
its weights.

Training: every step draws ``batch_size`` random training rows (a seeded NumPy generator), gathers
their windows with one tensor index (:func:`~quant_assets.features.sequences.window_rows`; no window
is cut in a Python loop), and takes an AdamW step on the MSE or MAE between the predicted and the
realized ``fwd_ret_12`` (both divided by the standardized scale of a 12-bar sum). Every
``eval_every`` steps the loss on a fixed sample of validation rows decides early stopping; the
weights of the best validation loss are kept. Training also stops at ``max_steps`` or when the wall
time budget ``time_budget_s`` (the whole fit, preparation and final evaluation included) would be
exceeded.

Determinism: ``torch.manual_seed(seed)``, deterministic algorithms and ``threads`` (2) intra-op
threads during fit and predict (the previous settings are restored afterwards), so refitting on the
same data gives predictions equal within 1e-6, unless the time budget stopped one of the fits at
another step (``fit`` returns ``stopped_by_time_budget``).
"""

from __future__ import annotations

import io
import math
import os
import time
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

# torch's OpenMP threads spin while they wait for each other (libgomp's default). On a machine with
# more runnable threads than cores (other runs, other assets training at the same time) a spinning
# thread holds a core the thread it waits for needs: a 2-thread N-HiTS step measured 2.6 s instead
# of 0.09 s at load 12 on 2 cores; waiting passively it stays near its idle time. The OpenMP runtime
# reads this once, when torch loads it, so it is set before the first `import torch`; a value the
# operator set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import torch
from torch import nn

from quant_assets.features.sequences import (
    INPUT_SIZE,
    SEQUENCE_CHANNELS,
    TARGET_CHANNEL,
    SequenceTable,
    sequence_table,
    window_rows,
)
from quant_assets.models.base import HORIZON_BARS, TARGET, ForecastModel, Panel, TimeRange
from quant_assets.store.lake import write_bytes_atomic

WEIGHTS_FILE = "weights.pt"
LOSSES = ("mse", "mae")
PREDICT_BATCH = 4096  # windows per forward pass at inference and validation


@dataclass(frozen=True)
class TorchConfig:
    """Settings every sequence model shares (each model's ``Config`` adds its architecture).

    Attributes:
        input_size: bars per input window.
        channels: feature columns of the window, ``ret_1`` first (the forecast channel).
        batch_size: random windows per training step.
        learning_rate, weight_decay: AdamW's.
        max_steps: training steps at most.
        eval_every: steps between two validation losses.
        patience: validation losses without improvement before training stops.
        valid_windows: validation rows scored each time at most (a fixed seeded sample).
        time_budget_s: wall seconds for the whole fit.
        loss: ``"mse"`` or ``"mae"``.
        input_clip: standardized inputs are clipped to +-this.
        target_clip: standardized targets are clipped to +-this for the loss (fat tails).
        grad_clip: gradient norm clipped to this (0: off).
        threads: torch intra-op threads during fit and predict.
    """

    input_size: int = INPUT_SIZE
    channels: tuple[str, ...] = SEQUENCE_CHANNELS
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    max_steps: int = 5000
    eval_every: int = 100
    patience: int = 5
    valid_windows: int = 16384
    time_budget_s: float = 300.0
    loss: str = "mse"
    input_clip: float = 10.0
    target_clip: float = 10.0
    grad_clip: float = 1.0
    threads: int = 2

    def __post_init__(self) -> None:
        if not self.channels or self.channels[0] != TARGET_CHANNEL:
            raise ValueError(
                f"channels must start with the forecast channel {TARGET_CHANNEL!r}, got {self.channels}"
            )
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels repeat a name: {self.channels}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        positive = (
            "input_size",
            "batch_size",
            "max_steps",
            "eval_every",
            "patience",
            "valid_windows",
            "threads",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be > 0, got {self.time_budget_s}")

    @classmethod
    def small_profile(cls, **architecture: Any) -> Self:
        """The small configuration (tests, demo: a few seconds on a few symbols and days): the
        training settings every sequence model shares there, with `architecture` (its own sizes)."""
        return cls(
            input_size=48,
            batch_size=256,
            learning_rate=3e-3,
            max_steps=300,
            eval_every=25,
            patience=4,
            valid_windows=2048,
            time_budget_s=20.0,
            # One thread: the operations of so small a network are too small to split, and a
            # second thread only adds a wait at every one of them.
            threads=1,
            **architecture,
        )


@contextmanager
def torch_settings(*, seed: int | None, threads: int) -> Iterator[None]:
    """Seed torch, use deterministic algorithms and `threads` threads; restore the settings after."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


class SequenceNetwork(nn.Module):
    """Standardized windows in, the forecast path of the target channel out; carries the scaling.

    ``core`` maps float32 ``(batch, input_size, channels)`` standardized windows to the
    ``(batch, horizon)`` path in standardized ``ret_1`` units.
    """

    def __init__(self, core: nn.Module, n_channels: int) -> None:
        super().__init__()
        self.core = core
        self.register_buffer("channel_mean", torch.zeros(n_channels, dtype=torch.float64))
        self.register_buffer("channel_std", torch.ones(n_channels, dtype=torch.float64))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.core(windows)

    def standardize(self, values: np.ndarray, clip: float) -> torch.Tensor:
        """A sequence table's values standardized, clipped and NaN -> 0, as a float32 tensor."""
        mean = self.channel_mean.numpy()
        std = self.channel_std.numpy()
        scaled = np.clip((values.astype(np.float64) - mean) / std, -clip, clip)
        return torch.from_numpy(np.nan_to_num(scaled, nan=0.0).astype(np.float32))

    def to_return(self, path_sum: torch.Tensor) -> torch.Tensor:
        """The forecast path's sum (standardized ``ret_1`` units) as a ``fwd_ret_12`` log return."""
        mean, std = self.channel_mean[0], self.channel_std[0]
        return path_sum.double() * std + HORIZON_BARS * mean

    def standardized_target(self, target: np.ndarray) -> np.ndarray:
        """``fwd_ret_12`` in the units the loss compares: (y - 12 mean) / (std sqrt 12)."""
        mean, std = float(self.channel_mean[0]), float(self.channel_std[0])
        return (target - HORIZON_BARS * mean) / (std * math.sqrt(HORIZON_BARS))


def channel_statistics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each channel over the finite values of `values` (rows x channels).

    Raises:
        ValueError: a channel has no finite value, or the forecast channel (the first) is constant.
    """
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    if (counts == 0).any():
        raise ValueError("a window channel has no finite value in the training rows")
    filled = np.where(finite, values, 0.0).astype(np.float64)
    mean = filled.sum(axis=0) / counts
    var = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / counts
    std = np.sqrt(var)
    if std[0] == 0:
        raise ValueError("the forecast channel is constant over the training rows")
    return mean, np.where(std > 0, std, 1.0)


class _Batches:
    """Training data on the tensor side: standardized channel values, window rows, targets."""

    def __init__(
        self, network: SequenceNetwork, table: SequenceTable, target: np.ndarray, config: TorchConfig
    ) -> None:
        self.values = network.standardize(table.values, config.input_clip)
        self.position = table.position
        self.input_size = config.input_size
        clipped = np.clip(network.standardized_target(target), -config.target_clip, config.target_clip)
        self.target = torch.from_numpy(np.nan_to_num(clipped, nan=0.0).astype(np.float32))

    def windows(self, rows: np.ndarray) -> torch.Tensor:
        index = torch.from_numpy(window_rows(self.position, rows, self.input_size))
        return self.values[index]


def _loss(kind: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    error = prediction - target
    return (error * error).mean() if kind == "mse" else error.abs().mean()


class TorchForecastModel(ForecastModel):
    """A sequence model over feature windows (see the module docstring); subclasses build the core."""

    config_type: ClassVar[type[TorchConfig]]

    def __init__(self, config: TorchConfig | None = None, *, seed: int = 0) -> None:
        super().__init__(config, seed=seed)
        self.network: SequenceNetwork | None = None

    @property
    def settings(self) -> TorchConfig:
        """The model's config, typed."""
        config: TorchConfig = self.config
        return config

    @abstractmethod
    def build_core(self) -> nn.Module:
        """The architecture: ``(batch, input_size, channels)`` -> ``(batch, horizon)``."""

    def _new_network(self) -> SequenceNetwork:
        return SequenceNetwork(self.build_core(), len(self.settings.channels))

    # -- fit -----------------------------------------------------------------------------------------

    def fit(self, panel: Panel, train: TimeRange, valid: TimeRange) -> dict[str, float]:
        """Fit on the labelled rows of `train`, early stopping on those of `valid` (see the module).

        Returns:
            ``best_step``, ``steps``, ``epochs`` (windows drawn / training rows), ``seconds``,
            ``best_valid_loss``, ``train_rows``, ``valid_rows``, ``stopped_by_time_budget`` (0 or 1).

        Raises:
            ValueError: `train` or `valid` holds no labelled row, a channel is missing from the
                panel's schema, or a channel has no finite value in `train`.
        """
        started = time.monotonic()
        config = self.settings
        missing = [c for c in config.channels if c not in panel.features]
        if missing:
            raise ValueError(f"{self.name}: the panel's schema lacks the window channels {missing}")
        table = sequence_table(panel.frame, config.channels)
        target = panel.frame[TARGET].to_numpy(dtype=np.float64, na_value=np.nan)
        labelled = np.isfinite(target)
        train_rows = np.flatnonzero(panel.mask(train) & labelled)
        valid_rows = np.flatnonzero(panel.mask(valid) & labelled)
        for part, rows in (("train", train_rows), ("valid", valid_rows)):
            if rows.size == 0:
                raise ValueError(
                    f"{self.name}: no labelled panel row in the {part} range {train if part == 'train' else valid}"
                )
        self.remember_schema(panel)
        rng = np.random.default_rng(self.seed)
        if valid_rows.size > config.valid_windows:
            valid_rows = np.sort(rng.choice(valid_rows, size=config.valid_windows, replace=False))
        in_train = np.flatnonzero(panel.mask(train))
        mean, std = channel_statistics(table.values[in_train])

        with torch_settings(seed=self.seed, threads=config.threads):
            network = self._new_network()
            network.channel_mean.copy_(torch.from_numpy(mean))
            network.channel_std.copy_(torch.from_numpy(std))
            data = _Batches(network, table, target, config)
            optimizer = torch.optim.AdamW(
                network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
            )
            figures = self._train(network, optimizer, data, train_rows, valid_rows, rng, started)
        self.network = network
        figures.update(
            train_rows=float(train_rows.size),
            valid_rows=float(valid_rows.size),
            seconds=time.monotonic() - started,
        )
        return figures

    def _train(
        self,
        network: SequenceNetwork,
        optimizer: torch.optim.Optimizer,
        data: _Batches,
        train_rows: np.ndarray,
        valid_rows: np.ndarray,
        rng: np.random.Generator,
        started: float,
    ) -> dict[str, float]:
        config = self.settings
        best_loss, best_step, best_state = math.inf, 0, _copy_state(network)
        evaluations_without_gain, step = 0, 0
        step_seconds, eval_seconds = 0.0, 0.0
        stopped_by_budget = False
        while step < config.max_steps:
            spent = time.monotonic() - started
            if step > 0 and spent + 2 * step_seconds + 1.5 * eval_seconds > config.time_budget_s:
                stopped_by_budget = True
                break
            tick = time.monotonic()
            train_step(
                network,
                optimizer,
                data,
                train_rows[rng.integers(0, train_rows.size, config.batch_size)],
                config,
            )
            step += 1
            took = time.monotonic() - tick
            step_seconds = took if step == 1 else 0.9 * step_seconds + 0.1 * took  # a moving average
            if step % config.eval_every and step < config.max_steps:
                continue
            tick = time.monotonic()
            loss = validation_loss(network, data, valid_rows, config.loss)
            eval_seconds = time.monotonic() - tick
            if loss < best_loss:
                best_loss, best_step, best_state = loss, step, _copy_state(network)
                evaluations_without_gain = 0
            else:
                evaluations_without_gain += 1
                if evaluations_without_gain >= config.patience:
                    break
        if best_step == 0 or (stopped_by_budget and step % config.eval_every):
            loss = validation_loss(network, data, valid_rows, config.loss)
            if loss < best_loss or best_step == 0:
                best_loss, best_step, best_state = loss, step, _copy_state(network)
        network.load_state_dict(best_state)
        network.eval()
        return {
            "best_step": float(best_step),
            "steps": float(step),
            "epochs": step * config.batch_size / train_rows.size,
            "best_valid_loss": float(best_loss),
            "stopped_by_time_budget": float(stopped_by_budget),
        }

    # -- predict -------------------------------------------------------------------------------------

    def predict(self, panel: Panel, rows: TimeRange) -> pd.DataFrame:
        """``symbol, open_time, prediction`` (float64 ``fwd_ret_12``) for every panel row in `rows`.

        A row's window reads the panel's earlier rows of its symbol (rows before `rows.start` are
        context); give ``input_size`` bars of context for full windows.

        Raises:
            SchemaMismatch: `panel` was built under another feature schema than the model's.
            RuntimeError: the model is not fitted.
        """
        self.check_panel(panel)
        network = self._fitted()
        config = self.settings
        selected = np.flatnonzero(panel.mask(rows))
        out = panel.frame.iloc[selected][["symbol", "open_time"]].reset_index(drop=True)
        table = sequence_table(panel.frame, config.channels)
        with torch_settings(seed=None, threads=config.threads):
            values = network.standardize(table.values, config.input_clip)
            predictions = np.empty(selected.size, dtype=np.float64)
            with torch.no_grad():
                for first in range(0, selected.size, PREDICT_BATCH):
                    chunk = selected[first : first + PREDICT_BATCH]
                    windows = values[torch.from_numpy(window_rows(table.position, chunk, config.input_size))]
                    predictions[first : first + chunk.size] = network.to_return(
                        network(windows).sum(dim=1)
                    ).numpy()
        out["prediction"] = predictions
        return out

    def _fitted(self) -> SequenceNetwork:
        if self.network is None:
            raise RuntimeError(f"{self.name} model is not fitted")
        return self.network

    # -- save / load ---------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """``model.json`` (config, seed, features, schema hash) and ``weights.pt`` (state_dict)."""
        network = self._fitted()
        buffer = io.BytesIO()
        torch.save(network.state_dict(), buffer)
        write_bytes_atomic(Path(directory) / WEIGHTS_FILE, buffer.getvalue())
        self.save_meta(directory, weights=WEIGHTS_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """The model :meth:`save` wrote into `directory`.

        Raises:
            FileNotFoundError: a file is missing; ValueError: it holds another model.
        """
        model, _ = cls.from_meta(directory)
        network = model._new_network()
        state = torch.load(io.BytesIO((Path(directory) / WEIGHTS_FILE).read_bytes()), weights_only=True)
        network.load_state_dict(state)
        network.eval()
        model.network = network
        return model

    def importances(self) -> dict[str, float] | None:
        """Sequence models have no per-feature gain: ``None``."""
        return None


def train_step(
    network: SequenceNetwork,
    optimizer: torch.optim.Optimizer,
    data: _Batches,
    rows: np.ndarray,
    config: TorchConfig,
) -> float:
    """One optimizer step on the windows ending at `rows`; the training loss."""
    network.train()
    windows = data.windows(rows)
    prediction = network(windows).sum(dim=1) / math.sqrt(HORIZON_BARS)
    loss = _loss(config.loss, prediction, data.target[torch.from_numpy(rows)])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
    optimizer.step()
    return float(loss.detach())


def validation_loss(network: SequenceNetwork, data: _Batches, rows: np.ndarray, kind: str) -> float:
    """Mean loss over the windows ending at `rows` (eval mode, no gradient)."""
    network.eval()
    total = 0.0
    with torch.no_grad():
        for first in range(0, rows.size, PREDICT_BATCH):
            chunk = rows[first : first + PREDICT_BATCH]
            prediction = network(data.windows(chunk)).sum(dim=1) / math.sqrt(HORIZON_BARS)
            total += float(_loss(kind, prediction, data.target[torch.from_numpy(chunk)])) * chunk.size
    return total / rows.size


def _copy_state(network: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in network.state_dict().items()}


@dataclass(frozen=True)
class StepTimings:
    """Seconds of each timed training step: wall clock, and CPU time of the process (all threads)."""

    wall: list[float]
    cpu: list[float]


def step_timings(
    model: TorchForecastModel, panel: Panel, train: TimeRange, *, steps: int, warmup: int = 3
) -> StepTimings:
    """Time `steps` training steps of `model`'s config on `panel` (after `warmup` steps), windows
    gathered as in :meth:`TorchForecastModel.fit`: the benchmark's figure.

    CPU time does not grow with other processes' load the way wall time does, so on a busy machine
    it is the figure to compare (divided by the threads, it bounds the wall time of an idle one).
    """
    config = model.settings
    table = sequence_table(panel.frame, config.channels)
    target = panel.frame[TARGET].to_numpy(dtype=np.float64, na_value=np.nan)
    train_rows = np.flatnonzero(panel.mask(train) & np.isfinite(target))
    mean, std = channel_statistics(table.values[train_rows])
    rng = np.random.default_rng(model.seed)
    timings = StepTimings(wall=[], cpu=[])
    with torch_settings(seed=model.seed, threads=config.threads):
        network = model._new_network()
        network.channel_mean.copy_(torch.from_numpy(mean))
        network.channel_std.copy_(torch.from_numpy(std))
        data = _Batches(network, table, target, config)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        for i in range(warmup + steps):
            wall, cpu = time.perf_counter(), time.process_time()
            train_step(
                network,
                optimizer,
                data,
                train_rows[rng.integers(0, train_rows.size, config.batch_size)],
                config,
            )
            if i >= warmup:
                timings.wall.append(time.perf_counter() - wall)
                timings.cpu.append(time.process_time() - cpu)
    return timings


__all__ = [
    "SequenceNetwork",
    "StepTimings",
    "TorchConfig",
    "TorchForecastModel",
    "step_timings",
    "torch_settings",
    "train_step",
    "validation_loss",
]
