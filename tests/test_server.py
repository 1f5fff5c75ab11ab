import numpy as np
import pytest

from prunefl_lite import server


def test_weighted_average_is_the_fedavg_rule_in_float64():
    rng = np.random.default_rng(0)
    clients = [[rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)]
               for _ in range(4)]
    n = [10, 1, 5, 7]
    avg = server.weighted_average(clients, n)
    for i in range(2):
        expected = sum(nk * c[i].astype(np.float64) for nk, c in zip(n, clients)) / sum(n)
        assert avg[i].dtype == np.float32
        assert np.allclose(avg[i], expected, rtol=0, atol=1e-7)


def test_weighted_average_of_one_client_is_that_client():
    w = [np.array([1.5, -2.0], np.float32)]
    assert np.array_equal(server.weighted_average([w], [3])[0], w[0])


@pytest.mark.parametrize(
    "weights, counts, message",
    [
        ([], [], "at least one client"),
        ([[np.ones(2)], [np.ones(2)]], [1], "one count per client"),
        ([[np.ones(2)], [np.ones(3)]], [1, 1], "shapes must match"),
        ([[np.ones(2)], [np.array([1.0, np.nan])]], [1, 1], "client 1 weight 0 has non-finite"),
        ([[np.ones(2)], [np.array([np.inf, 1.0])]], [1, 1], "non-finite"),
        ([[np.ones(2)]], [0], "positive sum"),
        ([[np.ones(2)]], [-1], "positive sum"),
    ],
)
def test_weighted_average_refuses_bad_input(weights, counts, message):
    with pytest.raises(ValueError, match=message):
        server.weighted_average(weights, counts)


def test_keepers_average_keeps_magnitudes_and_union_of_masks():
    a = [np.array([2.0, 0.0, 0.0])]
    b = [np.array([4.0, 6.0, 0.0])]
    assert server.keepers_average([a, b], [1, 3])[0].tolist() == [3.5, 6.0, 0.0]
    assert server.weighted_average([a, b], [1, 3])[0].tolist() == [3.5, 4.5, 0.0]


def test_server_update_interpolates():
    g, avg = [np.array([0.0, 2.0])], [np.array([4.0, 2.0])]
    assert server.server_update(g, avg, 1.0)[0].tolist() == [4.0, 2.0]
    assert server.server_update(g, avg, 0.25)[0].tolist() == [1.0, 2.0]
