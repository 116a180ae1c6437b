"""N-HiTS as the paper draws it: multi-rate pooling, interpolated coefficients, doubly residual stacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quant_assets.models import MODELS
from quant_assets.models.base import HORIZON_BARS
from quant_assets.models.nhits import Block, Config, NHiTS, NHiTSNetwork


def test_nhits_is_registered() -> None:
    assert MODELS["nhits"] is NHiTS
    assert NHiTS.name == "nhits"


def test_each_stack_forecasts_fewer_coefficients_the_coarser_it_is() -> None:
    network = NHiTSNetwork(Config())

    blocks = list(network.blocks)

    assert [b.knots for b in blocks] == [3, 6, 12]  # 12 // 4, 12 // 2, 12 // 1
    assert [b.pool.kernel_size for b in blocks] == [2, 2, 1]
    first_layer = [b.mlp[0] for b in blocks]
    assert [layer.in_features for layer in first_layer] == [48 * 3, 48 * 3, 96 * 3]  # pooled x channels


def test_a_blocks_forecast_interpolates_its_coefficients_linearly() -> None:
    torch.manual_seed(0)
    block = Block(Config(), pool=2, downsample=4)
    residual, others = torch.randn(5, 96), torch.randn(5, 2, 96)

    backcast, forecast = block(residual, others)

    theta = block.mlp(block.pool(torch.cat((residual.unsqueeze(1), others), dim=1)).flatten(1))
    knots = theta[:, 96:].detach().numpy()
    # F.interpolate(mode="linear", align_corners=False): output bar i reads source position
    # (i + 0.5) * knots / horizon - 0.5, clamped to the first and last knot.
    source = np.clip((np.arange(HORIZON_BARS) + 0.5) * 3 / HORIZON_BARS - 0.5, 0, 2)
    expected = np.stack([np.interp(source, np.arange(3), row) for row in knots])
    np.testing.assert_allclose(forecast.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(backcast.detach().numpy(), theta[:, :96].detach().numpy())


def test_max_pooling_reads_the_window_at_the_stacks_rate() -> None:
    block = Block(Config(), pool=2, downsample=4)
    window = torch.arange(12.0).view(1, 1, 12)

    assert block.pool(window).tolist() == [[[1.0, 3.0, 5.0, 7.0, 9.0, 11.0]]]


def test_stacks_are_doubly_residual() -> None:
    torch.manual_seed(0)
    network = NHiTSNetwork(Config(hidden_sizes=(16,)))
    windows = torch.randn(4, 96, 3)

    forecast = network(windows)

    residual, others = windows[:, :, 0], windows[:, :, 1:].transpose(1, 2)
    expected = torch.zeros(4, HORIZON_BARS)
    for block in network.blocks:
        backcast, block_forecast = block(residual, others)
        residual = residual - backcast  # each block sees what the ones before did not explain
        expected = expected + block_forecast  # and the forecasts add up
    torch.testing.assert_close(forecast, expected)


def test_the_forecast_reads_the_other_channels() -> None:
    torch.manual_seed(0)
    network = NHiTSNetwork(Config(hidden_sizes=(16,)))
    windows = torch.randn(2, 96, 3)
    changed = windows.clone()
    changed[:, -1, 1] += 1.0

    assert not torch.equal(network(windows), network(changed))


def test_the_benchmark_config_is_neuralforecasts() -> None:
    config = Config.neuralforecast()

    assert (config.input_size, config.channels, config.batch_size, config.loss) == (
        96,
        ("ret_1",),
        1024,
        "mae",
    )
    assert (config.hidden_sizes, config.pool_sizes, config.downsample_factors) == (
        (512, 512),
        (2, 2, 1),
        (4, 2, 1),
    )
    assert config.learning_rate == 1e-3


@pytest.mark.parametrize(
    "changes",
    [
        {"pool_sizes": (2, 1), "downsample_factors": (4, 2, 1)},
        {"pool_sizes": (0, 1, 1)},
        {"hidden_sizes": ()},
    ],
)
def test_a_bad_architecture_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"pool|MLP"):
        Config(**changes)  # type: ignore[arg-type]
