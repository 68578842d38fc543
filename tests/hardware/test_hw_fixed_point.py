"""The NumPy fixed-point reference: hand-computed CUBA steps and netx weight preparation."""

from __future__ import annotations

import numpy as np
import pytest

from neurogshn.hardware.fixed_point import FixedPointLayer, cuba_step, loihi_synapse
from neurogshn.lava_compat import lava_module


def test_identity_and_even_weights_pass_the_netx_synapse_unchanged() -> None:
    ident = loihi_synapse(np.eye(5, dtype=np.int64))
    a = np.array([[3, -7, 32767, 0, -32767]])
    np.testing.assert_array_equal(ident(a), a)
    w = np.array([[254, -256, 2], [-4, 100, 0]])
    syn = loihi_synapse(w)
    np.testing.assert_array_equal(syn(np.array([[1, 1, 1]])), [[0, 96]])
    np.testing.assert_array_equal(syn.effective_integer_weight, w)
    small = loihi_synapse(np.array([[6, -2], [0, 4]]))  # shifted up by netx, exact after >>
    np.testing.assert_array_equal(small(np.array([[1, 1]])), [[4, 4]])


@pytest.mark.parametrize(
    ("low", "high"), [(-256, 255), (-40, 41), (0, 200), (-300, 1), (3, 9), (-256, 300)]
)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_synapse_preparation_equals_lava_netx_and_dense(low: int, high: int) -> None:
    """Same integers as netx's optimize_weight_bits followed by Lava Dense's clip + truncate."""
    netx_utils = lava_module("lava.lib.dl.netx.utils")
    wu = lava_module("lava.utils.weightutils")
    rng = np.random.default_rng(high - low)
    for _ in range(5):
        w = rng.integers(low, high, size=(6, 9))
        w[0, 0] = high - 1
        w2, nbits, wexp, _ = netx_utils.optimize_weight_bits(w.copy())
        mode = wu.determine_sign_mode(w2)  # what Lava's Dense model does
        lava_w = wu.truncate_weights(wu.clip_weights(w2, mode, num_bits=8), mode, nbits)
        syn = loihi_synapse(w)
        np.testing.assert_array_equal(syn.weight, lava_w)
        assert syn.weight_exp == wexp


def test_cuba_step_matches_hand_computation() -> None:
    layer = FixedPointLayer(loihi_synapse(np.eye(1, dtype=np.int64)), 1024, 2048, 10)
    u = v = np.zeros(1, np.int64)
    # step 1: u = 0 + 5·64 = 320; v = 0 + 320 = 320 (threshold 10·64 = 640)
    u, v, s = cuba_step(u, v, np.array([5]), layer)
    assert (u[0], v[0], s[0]) == (320, 320, False)
    # step 2: u = 320·3072>>12 = 240, +320 = 560; v = 320·2048>>12 = 160, +560 = 720 > 640 → spike
    u, v, s = cuba_step(u, v, np.array([5]), layer)
    assert (u[0], v[0], s[0]) == (560, 0, True)
    # negative values: sign·(|x|·keep >> 12): u = -(560·3072>>12) = -420 with a = -10 → -1060
    u, v, s = cuba_step(-u, v, np.array([-10]), layer)
    assert (u[0], v[0], s[0]) == (-420 - 640, -1060, False)


def test_current_wraps_at_24_bits_and_voltage_saturates() -> None:
    layer = FixedPointLayer(loihi_synapse(np.eye(1, dtype=np.int64)), 4096, 0, 131071)
    low = np.array([-(1 << 23) + 10])
    u, v, _ = cuba_step(np.zeros(1, np.int64), low, np.array([-1]), layer)
    assert u[0] == -64 and v[0] == -(1 << 23) + 1  # v saturates, it does not wrap
    big = np.array([(1 << 17)])  # 2^17 · 64 = 2^23 → stays (Lava wraps only above 2^23)
    u, _, _ = cuba_step(np.zeros(1, np.int64), np.zeros(1, np.int64), big + 1, layer)
    assert u[0] == (1 << 23) + 64 - (1 << 24)
