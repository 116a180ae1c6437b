"""PatchTST as the paper draws it: RevIN, patching, channel independence, flatten head."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from quant_assets.models import MODELS
from quant_assets.models.base import HORIZON_BARS
from quant_assets.models.patchtst import Config, Dropout, EncoderLayer, PatchTST, PatchTSTNetwork


def network(config: Config, seed: int = 0) -> PatchTSTNetwork:
    torch.manual_seed(seed)
    return PatchTSTNetwork(config).eval()


def test_patchtst_is_registered() -> None:
    assert MODELS["patchtst"] is PatchTST
    assert PatchTST.name == "patchtst"


def test_a_96_bar_window_makes_12_patches_of_16() -> None:
    config = Config()
    net = network(config)

    assert config.patches == 12  # (96 - 16) / 8 + 1, plus one from the end padding
    assert net.embed.in_features == 16
    assert net.head.in_features == 12 * config.d_model
    assert net(torch.randn(3, 96, 3)).shape == (3, HORIZON_BARS)


def test_channels_pass_the_encoder_independently() -> None:
    net = network(Config())
    windows = torch.randn(4, 96, 3)
    changed = windows.clone()
    changed[:, :, 1:] = torch.randn(4, 96, 2)  # every other channel replaced

    with torch.no_grad():
        net.channel_weights.copy_(torch.tensor([1.0, 0.0, 0.0]))  # read the forecast channel only
        alone = net(windows)
        assert torch.equal(net(changed), alone)  # the encoder never mixed the channels
        net.channel_weights.copy_(torch.tensor([1.0, 0.5, 0.0]))
        assert not torch.equal(net(changed), net(windows))  # the learned combination does


def test_revin_makes_the_forecast_scale_with_the_window() -> None:
    net = network(Config())
    windows = torch.randn(4, 96, 3)
    scaled = windows.clone()
    scaled[:, :, 0] = windows[:, :, 0] * 3.0 + 0.7

    with torch.no_grad():
        torch.testing.assert_close(net(scaled), net(windows) * 3.0, rtol=1e-4, atol=1e-5)


def test_revin_can_restore_the_windows_location() -> None:
    net = network(Config(revin_restore_location=True))
    windows = torch.randn(4, 96, 3)
    shifted = windows.clone()
    shifted[:, :, 0] += 0.7

    with torch.no_grad():
        torch.testing.assert_close(net(shifted), net(windows) + 0.7, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("res_attention", [True, False])
def test_the_encoder_layer_is_multi_head_attention_then_feed_forward(res_attention: bool) -> None:
    config = Config(res_attention=res_attention, dropout=0.0)
    torch.manual_seed(0)
    layer = EncoderLayer(config).eval()
    x, previous = torch.randn(5, 12, config.d_model), torch.randn(5, config.n_heads, 12, 12)

    out, scores = layer(x, previous)

    # The reference computation, written out: scores = QK^T / sqrt(d) + previous scores.
    head = config.d_model // config.n_heads
    q, k, v = layer.qkv(x).view(5, 12, 3, config.n_heads, head).permute(2, 0, 3, 1, 4)
    expected_scores = q @ k.transpose(-2, -1) / math.sqrt(head) + previous
    attended = (torch.softmax(expected_scores, dim=-1) @ v).transpose(1, 2).reshape(5, 12, config.d_model)
    hidden = layer.norm_attention(x + layer.out(attended))
    expected = layer.norm_feed_forward(hidden + layer.feed_forward(hidden))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    if res_attention:
        assert scores is not None
        torch.testing.assert_close(scores, expected_scores, rtol=1e-4, atol=1e-5)
    else:
        assert scores is None


def test_dropout_drops_its_share_and_keeps_the_mean() -> None:
    dropout = Dropout(0.2).train()
    torch.manual_seed(0)
    x = torch.ones(200_000)

    out = dropout(x)

    dropped = float((out == 0).float().mean())
    assert abs(dropped - 0.2) < 0.005
    assert abs(float(out.mean()) - 1.0) < 0.01
    torch.manual_seed(0)
    assert torch.equal(dropout(x), out)  # seeded
    assert torch.equal(dropout.eval()(x), x)  # off at inference


def test_the_benchmark_config_is_neuralforecasts() -> None:
    config = Config.neuralforecast()

    assert (config.input_size, config.channels, config.batch_size, config.loss) == (
        96,
        ("ret_1",),
        1024,
        "mae",
    )
    assert (config.d_model, config.n_heads, config.d_ff, config.n_layers) == (128, 16, 256, 3)
    assert (config.patch_len, config.stride, config.dropout, config.res_attention) == (16, 8, 0.2, True)
    assert (config.revin_subtract_last, config.revin_restore_location, config.learning_rate) == (
        True,
        True,
        1e-4,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"d_model": 30, "n_heads": 4}, "multiple of n_heads"), ({"patch_len": 200}, "patch_len")],
)
def test_a_bad_architecture_is_refused(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(Config(), **changes)
