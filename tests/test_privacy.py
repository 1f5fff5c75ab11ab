"""privacy: the Dense-layer inversion, DP-FedAvg and its accounting, the secure-sum toy."""

import dataclasses

import numpy as np
import pytest
from fl_setup import CLIENTS, CONFIG, TEST, mlp, without_seconds

import prunefl_lite as pfl
from prunefl_lite.privacy import (
    DPFedAvg,
    agree_pair_seeds,
    clip_update,
    decode_fixed_point,
    encode_fixed_point,
    epsilon,
    invert_dense_update,
    masked_upload,
    secure_sum,
    top_k_mask,
)
from prunefl_lite.pruning import ClientPruning, GlobalPruning

CONFIG = dataclasses.replace(CONFIG, num_rounds=4)
RNG = np.random.default_rng(0)


# --- inversion of a Dense layer's update ---


def test_inversion_recovers_a_single_example_exactly_from_a_real_sgd_step():
    import tensorflow as tf

    layer = tf.keras.layers.Dense(16, activation="relu")
    x = tf.constant(RNG.uniform(0, 1, (1, 10)), tf.float32)
    layer.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2) + tf.reduce_sum(layer(x))
    grad_w, grad_b = tape.gradient(loss, layer.trainable_variables)
    recovered = invert_dense_update(-0.1 * grad_w.numpy(), -0.1 * grad_b.numpy())
    np.testing.assert_allclose(recovered, x.numpy()[0], atol=1e-5)


def test_inversion_of_a_batch_is_a_mixture_not_any_single_example():
    xs, deltas = RNG.uniform(0, 1, (3, 6)), RNG.normal(size=(3, 4))
    kernel, bias = sum(np.outer(x, d) for x, d in zip(xs, deltas)), deltas.sum(axis=0)
    recovered = invert_dense_update(kernel, bias)
    assert min(np.abs(recovered - x).max() for x in xs) > 1e-3


def test_inversion_leaves_unknown_inputs_nan_and_uses_any_surviving_unit():
    x, delta = np.array([0.2, 0.4, 0.6]), np.array([1.0, -2.0])
    kept_w = np.array([[True, False], [False, True], [False, False]])
    recovered = invert_dense_update(np.outer(x, delta), delta, kept=(kept_w, np.ones(2, bool)))
    np.testing.assert_allclose(recovered[:2], x[:2])
    assert np.isnan(recovered[2])


@pytest.mark.parametrize("kernel, bias, kept, unit, message", [
    (np.zeros(3), np.zeros(3), None, None, "kernel_update must be"),
    (np.zeros((3, 2)), np.zeros(3), None, None, "kernel_update must be"),
    (np.zeros((3, 2)), np.zeros(2), (np.ones((2, 2), bool), np.ones(2, bool)), None, "kept must"),
    (np.zeros((3, 2)), np.zeros(2), None, 2, "unit must be in"),
])
def test_inversion_validation(kernel, bias, kept, unit, message):
    with pytest.raises(ValueError, match=message):
        invert_dense_update(kernel, bias, kept=kept, unit=unit)


def test_top_k_mask_keeps_the_largest_entries_jointly():
    arrays = [RNG.normal(size=(5, 4)), RNG.normal(size=3)]
    masks = top_k_mask(arrays, 0.75)
    kept = np.concatenate([np.abs(a)[m] for a, m in zip(arrays, masks)])
    dropped = np.concatenate([np.abs(a)[~m] for a, m in zip(arrays, masks)])
    assert kept.size == 23 - round(0.75 * 23) and kept.min() >= dropped.max()


@pytest.mark.parametrize("fraction, error", [
    (-0.1, ValueError), (1.0, ValueError), (np.float32(1.0), ValueError), ("0.5", TypeError),
    (False, TypeError)])
def test_top_k_mask_validation(fraction, error):
    with pytest.raises(error, match=r"fraction must be a number in \[0, 1\)"):
        top_k_mask([np.ones(3)], fraction)


def test_top_k_mask_accepts_numpy_scalars():
    arrays = [np.array([3.0, -1.0]), np.array([0.5, -4.0])]
    assert all(np.array_equal(a, b) for a, b in zip(top_k_mask(arrays, np.float32(0.5)),
                                                     top_k_mask(arrays, 0.5)))


# --- DP-FedAvg ---


def test_clip_update_bounds_the_joint_norm_and_keeps_small_updates():
    update = [RNG.normal(size=(4, 3)), RNG.normal(size=3)]
    clipped, norm = clip_update(update, 0.5)
    assert norm > 0.5
    assert np.sqrt(sum(np.sum(c**2) for c in clipped)) == pytest.approx(0.5)
    small, _ = clip_update([u * 1e-3 for u in update], 0.5)
    np.testing.assert_allclose(small[0], update[0] * 1e-3)


@pytest.mark.parametrize("clip_norm, error", [
    (0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), (np.float32(-1), ValueError),
    ("1", TypeError), (True, TypeError)])
def test_clip_norm_validation(clip_norm, error):
    with pytest.raises(error, match=r"clip_norm must be a number in \(0, inf\)"):
        clip_update([np.ones(2)], clip_norm)


@pytest.mark.parametrize("kwargs, message", [
    ({"noise_multiplier": -0.5, "clip_norm": 1.0},
     r"noise_multiplier must be a number in \[0, inf\)"),
    ({"noise_multiplier": float("inf"), "clip_norm": 1.0}, "noise_multiplier must be"),
    ({"noise_multiplier": 1.0, "clip_norm": 0.0}, r"clip_norm must be a number in \(0, inf\)"),
    ({"noise_multiplier": 1.0, "clip_norm": 1.0, "inner": ClientPruning(0.5)},
     "inner must aggregate by the plain average"),
])
def test_dp_fedavg_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DPFedAvg(**kwargs)


def test_dp_fedavg_without_noise_and_a_huge_clip_is_unweighted_fedavg():
    equal = dataclasses.replace(CONFIG, num_rounds=1)
    dp = pfl.run_fedavg(mlp, CLIENTS, TEST, equal, pruning=DPFedAvg(0.0, 1e9))
    start = [w.copy() for w in pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(
        equal, learning_rate=1e-30)).final_weights]  # one round with no movement: the start

    class Uploads(pfl.fedavg.NoPruning):
        def aggregate(self, updates, num_examples):
            return pfl.fedavg.weighted_average(updates, [1] * len(updates))

    plain = pfl.run_fedavg(mlp, CLIENTS, TEST, equal, pruning=Uploads())
    for a, b, s in zip(dp.final_weights, plain.final_weights, start):
        np.testing.assert_allclose(a - s, b - s, atol=1e-5)


def test_dp_fedavg_clips_every_client_update_and_noise_moves_the_model():
    clip = DPFedAvg(0.0, 0.05, report_norms=True)
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=clip)
    assert len(clip.update_norms) == CONFIG.num_rounds
    assert [len(n) for n in clip.update_norms] == history.metric("clients_completed")
    assert max(max(n) for n in clip.update_norms) > 0.05  # clipping was active
    # the norms travel in the upload: counted in bytes_report, which is part of bytes_up
    assert min(history.metric("bytes_report")) > 0
    silent = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=DPFedAvg(0.0, 0.05))
    assert silent.metric("bytes_report") == [0] * CONFIG.num_rounds
    assert [a - b for a, b in zip(history.metric("bytes_up"), silent.metric("bytes_up"))] \
        == history.metric("bytes_report")
    noisy = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=DPFedAvg(5.0, 0.05))
    moved = [np.abs(a - b).max() for a, b in zip(noisy.final_weights, history.final_weights)]
    assert max(moved) > 0.01


def test_dp_fedavg_noise_is_seeded_from_the_config():
    runs = [pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=DPFedAvg(1.0, 0.1))
            for _ in range(2)]
    assert without_seconds(runs[0]) == without_seconds(runs[1])
    other = pfl.run_fedavg(mlp, CLIENTS, TEST, dataclasses.replace(CONFIG, seed=1),
                           pruning=DPFedAvg(1.0, 0.1))
    assert not np.array_equal(other.final_weights[0], runs[0].final_weights[0])


def test_dp_fedavg_noise_std_is_z_c_over_m_on_the_average():
    config = dataclasses.replace(CONFIG, num_rounds=1, learning_rate=1e-30)  # clients stay put
    start = pfl.run_fedavg(mlp, CLIENTS, TEST, config).final_weights
    dp = pfl.run_fedavg(mlp, CLIENTS, TEST, config, pruning=DPFedAvg(2.0, 0.5)).final_weights
    noise = np.concatenate([(a - b).ravel() for a, b in zip(dp, start)])
    expected = 2.0 * 0.5 / CONFIG.clients_per_round
    assert noise.std() == pytest.approx(expected, rel=0.05)


def test_dp_fedavg_with_global_pruning_keeps_pruned_weights_exactly_zero():
    strategy = DPFedAvg(1.0, 0.1, inner=GlobalPruning(0.8, end_round=2))
    history = pfl.run_fedavg(mlp, CLIENTS, TEST, CONFIG, pruning=strategy)
    assert history.metric("sparsity")[-1] == pytest.approx(0.8, abs=0.01)
    assert strategy.masked


# --- accounting ---


def test_rdp_epsilon_reproduces_the_tff_tutorial_and_pld_is_tighter():
    # TensorFlow Federated's DP tutorial: 3,383 EMNIST clients, 120 per round (Poisson), noise
    # multiplier 1.2, 100 rounds: its RDP calibration reports (2, 1e-5)-DP.
    rdp = epsilon(1.2, 3383, 120, 100, delta=1e-5, accountant="rdp")
    pld = epsilon(1.2, 3383, 120, 100, delta=1e-5, accountant="pld")
    assert abs(rdp - 2.0) < 0.1
    assert 1.0 < pld < rdp


def test_epsilon_falls_with_more_noise_and_grows_with_rounds():
    assert epsilon(2.0, 100, 10, 50) < epsilon(1.0, 100, 10, 50)
    assert epsilon(1.0, 100, 10, 100) > epsilon(1.0, 100, 10, 50)


@pytest.mark.parametrize("args, message", [
    ((0.0, 100, 10, 10), r"noise_multiplier must be a number in \(0, inf\)"),
    ((1.0, 0, 10, 10), "num_clients must be an integer >= 1"),
    ((1.0, 100, 0, 10), "clients_per_round must be an integer in"),
    ((1.0, 100, 101, 10), "clients_per_round must be an integer in"),
    ((1.0, 100, 10, 0), "num_rounds must be an integer >= 1"),
])
def test_epsilon_argument_validation(args, message):
    with pytest.raises(ValueError, match=message):
        epsilon(*args)


@pytest.mark.parametrize("kwargs, message", [
    ({"delta": 0.0}, r"delta must be a number in \(0, 1\)"),
    ({"delta": 1}, r"delta must be a number in \(0, 1\)"),
    ({"accountant": "moments"}, "accountant must be one of"),
])
def test_epsilon_option_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        epsilon(1.0, 100, 10, 10, **kwargs)


def test_epsilon_writes_nothing_to_stderr(capfd):
    epsilon(1.0, 100, 10, 10, accountant="pld")
    assert capfd.readouterr().err == ""


# --- secure aggregation toy ---


def test_fixed_point_round_trips_within_half_a_step():
    values = RNG.normal(size=100)
    back = decode_fixed_point(encode_fixed_point(values, 16, 32), 16, 32)
    assert np.abs(back - values).max() <= 2.0**-17


@pytest.mark.parametrize("values, bits, message", [
    (np.array([1e6]), 32, "values must satisfy"),
    (np.array([1.0]), 4, "bits must be an integer in"),
    (np.array([1.0]), 63, "bits must be an integer in"),
    (np.array([1.0]), np.int64(63), "bits must be an integer in"),
])
def test_fixed_point_validation(values, bits, message):
    with pytest.raises(ValueError, match=message):
        encode_fixed_point(values, 16, bits)


@pytest.mark.parametrize("bits", [32.0, True, "32"])
def test_fixed_point_bits_must_be_an_integer(bits):
    with pytest.raises(TypeError, match="bits must be an integer"):
        encode_fixed_point(np.array([1.0]), 16, bits)


def test_fixed_point_accepts_numpy_integers():
    assert encode_fixed_point(np.array([1.0]), 4, np.int64(8)).tolist() == [16]


def test_secure_sum_equals_the_plain_sum_and_hides_each_upload():
    ids = [0, 1, 2, 3, 4]
    seeds = agree_pair_seeds(ids, seed=7)
    values = {k: encode_fixed_point(RNG.normal(size=500)) for k in ids}
    uploads = {k: masked_upload(values[k], k, seeds) for k in ids}
    total = decode_fixed_point(secure_sum(uploads, seeds))
    expected = sum(decode_fixed_point(v) for v in values.values())
    np.testing.assert_allclose(total, expected, atol=1e-9)
    for k in ids:  # a masked upload looks uniform on [0, 2^32), unlike the encoded value
        assert abs(uploads[k].mean() / 2**32 - 0.5) < 0.05
        assert np.corrcoef(uploads[k].astype(float), values[k].astype(float))[0, 1] < 0.2


def test_secure_sum_removes_the_masks_of_dropped_clients():
    ids = [0, 1, 2, 3]
    seeds = agree_pair_seeds(ids, seed=1)
    values = {k: encode_fixed_point(RNG.normal(size=50)) for k in ids}
    survivors = {k: masked_upload(values[k], k, seeds) for k in (0, 2)}
    expected = decode_fixed_point(values[0]) + decode_fixed_point(values[2])
    np.testing.assert_allclose(decode_fixed_point(secure_sum(survivors, seeds)), expected,
                               atol=1e-9)
    naive = sum(survivors.values()) % np.uint64(2**32)  # without unmasking: garbage
    assert np.abs(decode_fixed_point(naive) - expected).max() > 1.0


@pytest.mark.parametrize("ids", [[0], [1, 1], []])
def test_pair_seed_validation(ids):
    with pytest.raises(ValueError, match="client_ids must hold at least two distinct ids"):
        agree_pair_seeds(ids, seed=0)


def test_secure_sum_refuses_no_uploads():
    with pytest.raises(ValueError, match="uploads must hold at least one"):
        secure_sum({}, agree_pair_seeds([0, 1], seed=0))
