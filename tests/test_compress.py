"""Tests of prunefl_lite.compress: bit-exact round trips, encoding choice, sizes, corruption."""

import math

import numpy as np
import pytest

from prunefl_lite import compress

DTYPES = [
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64",
]  # fmt: skip
SHAPES = [(), (0,), (17,), (1000,), (4, 0, 3), (6, 7, 8)]
DENSITIES = [0.0, 0.01, 0.3, 1.0]


def random_array(dtype, shape, density, seed=0):
    """Random bit patterns (NaNs, -0.0, infinities included) with about `density` non-zeros."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        bits = np.ones(shape, dtype=np.uint8)
    else:
        uint = np.dtype(f"u{dtype.itemsize}")
        bits = rng.integers(1, np.iinfo(uint).max, size=shape, dtype=uint, endpoint=True)
    bits[rng.random(shape) >= density] = 0
    return bits.view(dtype)


def sparse_float32(n, density, seed=0):
    """Exactly round(n * density) non-zero float32 values at uniformly random positions."""
    rng = np.random.default_rng(seed)
    count = round(n * density)
    array = np.zeros(n, dtype=np.float32)
    array[rng.choice(n, size=count, replace=False)] = rng.uniform(0.5, 2.0, size=count)
    return array


def assert_bit_exact(decoded, original):
    assert decoded.dtype == original.dtype
    assert decoded.shape == original.shape
    assert decoded.tobytes() == original.tobytes()


def encodings(payload):
    return [info["encoding"] for info in compress.describe(payload)]


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_bit_exact(dtype, shape, density):
    array = random_array(dtype, shape, density)
    [decoded] = compress.decode(compress.encode([array]))
    assert_bit_exact(decoded, array)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_negative_zero_and_nan_survive(dtype):
    array = np.zeros(500, dtype=dtype)
    array[[3, 100, 101, 499]] = [-0.0, np.nan, -np.inf, 1.0]
    bits = array.view(f"u{array.itemsize}")
    bits[200] = bits[100] | 1  # a NaN with another payload
    array[300] = -np.nan
    [decoded] = compress.decode(compress.encode([array]))
    assert_bit_exact(decoded, array)
    assert np.signbit(decoded[3]) and decoded[3] == 0


def test_several_arrays_in_one_payload():
    arrays = [
        sparse_float32(5000, 0.01),
        random_array("float32", (30, 40), 1.0),
        np.zeros((2, 3), dtype=np.int64),
        np.array(7, dtype=np.uint16),
        np.zeros(0, dtype=np.float64),
        random_array("bool", (100,), 0.5),
    ]
    decoded = compress.decode(compress.encode(arrays))
    assert len(decoded) == len(arrays)
    for result, original in zip(decoded, arrays, strict=True):
        assert_bit_exact(result, original)
    assert compress.decode(compress.encode([])) == []


def test_layouts_scalars_and_byte_order():
    base = random_array("float32", (20, 30), 0.3)
    inputs = [base.T, base[::2, ::3], base.astype(">f4"), np.float64(-0.0), np.asfortranarray(base)]
    decoded = compress.decode(compress.encode(inputs))
    for result, original in zip(decoded, inputs, strict=True):
        assert result.shape == np.shape(original)
        assert result.tobytes() == np.ascontiguousarray(original, dtype=result.dtype).tobytes()
    assert decoded[2].dtype == np.dtype("<f4")  # big-endian input comes back little-endian


def test_decoded_arrays_are_writable_copies():
    payload = compress.encode([np.ones(10, dtype=np.float32), sparse_float32(1000, 0.01)])
    for result in compress.decode(payload):
        result[0] = 3.0
        assert result.flags.writeable and result.flags.c_contiguous


# --- which encoding is chosen ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (random_array("float32", (10_000,), 1.0), "raw"),
        (np.zeros(0, dtype=np.float32), "raw"),
        (np.arange(1, 20, dtype=np.int8), "raw"),
        (np.r_[sparse_float32(9_999, 0.5), np.float32(1)], "bitmask"),
        (sparse_float32(10_000, 0.1), "golomb-rice"),
        (sparse_float32(10_000, 0.01), "golomb-rice"),
        (np.zeros((100, 100), dtype=np.float32), "golomb-rice"),
    ],
    ids=["dense", "empty", "dense-int8", "half", "tenth", "hundredth", "all-zero"],
)
def test_encoding_choice(array, expected):
    payload = compress.encode([array])
    assert encodings(payload) == [expected]
    [info] = compress.describe(payload)
    assert info["dtype"] == str(array.dtype)
    assert info["shape"] == array.shape
    assert not info["masked"]


def test_rice_parameter_is_the_best_over_all_parameters():
    rng = np.random.default_rng(1)
    for gaps in [rng.geometric(0.01, 3000) - 1, rng.integers(0, 5000, 400), np.zeros(50, int)]:

        def cost(k, gaps=gaps):
            return int(np.sum(gaps >> k)) + gaps.size * k

        best = compress._best_rice_parameter(gaps)
        assert cost(best) == min(cost(k) for k in range(40))


# --- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("density", [0.5, 0.3, 0.1, 0.05, 0.02, 0.01])
def test_size_within_one_percent_of_entropy_bound(density):
    n = 200_000
    payload = compress.encode([sparse_float32(n, density)])
    assert len(payload) <= 1.01 * compress.entropy_bound_bytes(n, density)


def test_dense_size_within_one_percent_of_raw():
    array = random_array("float32", (200_000,), 1.0)
    assert len(compress.encode([array])) <= 1.01 * array.nbytes


# --- truncation and corruption -----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_payload():
    arrays = [sparse_float32(300, 0.05), np.arange(5, dtype=np.int16), np.zeros(40, bool)]
    mask = np.zeros(40, dtype=bool)
    mask[::4] = True
    return compress.encode(arrays, known_masks=[None, None, mask])


@pytest.fixture(scope="module")
def large_payload():
    return compress.encode([sparse_float32(50_000, 0.02), random_array("float64", (500,), 1.0)])


def test_every_truncation_of_a_small_payload_is_refused(small_payload):
    for length in range(len(small_payload)):
        with pytest.raises(ValueError, match="truncated|bad magic"):
            compress.decode(small_payload[:length])


def test_sampled_truncations_of_a_large_payload_are_refused(large_payload):
    rng = np.random.default_rng(2)
    for length in [0, 3, 5, 6, 20, *rng.integers(0, len(large_payload), 100)]:
        with pytest.raises(ValueError, match="truncated"):
            compress.decode(large_payload[:length])


def test_every_single_bit_flip_of_a_small_payload_is_refused(small_payload):
    for position in range(len(small_payload) * 8):
        corrupted = bytearray(small_payload)
        corrupted[position // 8] ^= 1 << (position % 8)
        with pytest.raises(ValueError):
            compress.decode(bytes(corrupted))


def test_random_bit_flips_of_a_large_payload_are_refused(large_payload):
    rng = np.random.default_rng(3)
    for position in rng.integers(0, len(large_payload) * 8, 100):
        corrupted = bytearray(large_payload)
        corrupted[position // 8] ^= 1 << (position % 8)
        with pytest.raises(ValueError):
            compress.decode(bytes(corrupted))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: b"XFLC" + p[4:], "bad magic"),
        (lambda p: b"", "truncated"),
        (lambda p: p[:4] + bytes([2]) + p[5:], "unsupported format version 2"),
        (lambda p: p + b"\x00", "inconsistent lengths"),
        (lambda p: p[:-5] + bytes([p[-5] ^ 0x10]) + p[-4:], "checksum mismatch"),
        (lambda p: p[:-1] + bytes([p[-1] ^ 1]), "checksum mismatch"),
    ],
    ids=["magic", "empty", "version", "trailing-byte", "body-byte", "checksum-byte"],
)
def test_corruption_messages_say_what_is_wrong(small_payload, mutate, message):
    with pytest.raises(ValueError, match=message):
        compress.decode(mutate(small_payload))
    with pytest.raises(ValueError, match=message):
        compress.describe(mutate(small_payload))


def test_payload_must_be_bytes():
    with pytest.raises(TypeError, match="payload must be bytes"):
        compress.decode("PFLC")


# --- known masks -------------------------------------------------------------------------------


@pytest.fixture
def masked_update():
    rng = np.random.default_rng(4)
    mask = rng.random((200, 50)) < 0.1
    update = np.where(mask, rng.standard_normal((200, 50)), 0).astype(np.float32)
    update[mask & (rng.random((200, 50)) < 0.2)] = 0  # some kept weights are zero too
    return update, mask


def test_known_mask_round_trip_is_smaller(masked_update):
    update, mask = masked_update
    bias = np.arange(50, dtype=np.float32)
    payload = compress.encode([update, bias], known_masks=[mask, None])
    decoded = compress.decode(payload, known_masks=[mask, None])
    assert_bit_exact(decoded[0], update)
    assert_bit_exact(decoded[1], bias)
    assert len(payload) < len(compress.encode([update, bias]))
    assert [info["masked"] for info in compress.describe(payload)] == [True, False]


def test_values_only_form_sends_the_mask_entries_in_c_order():
    mask = np.array([[True, False], [False, True]])
    array = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    payload = compress.encode([array], known_masks=[mask])
    [info] = compress.describe(payload)
    assert info["encoding"] == "raw" and info["section_bytes"] == 8
    assert payload[-12:-4] == np.array([1.0, 2.0], dtype="<f4").tobytes()


@pytest.mark.parametrize(
    ("decode_masks", "message"),
    [
        (None, r"encoded with a known mask: pass it as known_masks\[0\]"),
        ("nones", r"encoded with a known mask: pass it as known_masks\[0\]"),
        ("shifted", r"known_masks\[0\] differs from the mask"),
        ("fewer", r"known_masks\[0\] differs from the mask"),
        ("transposed", r"known_masks\[0\] must be a boolean array of shape \(200, 50\)"),
        ("float", r"known_masks\[0\] must be a boolean array"),
        ("extra", r"known_masks\[1\] is given but array 1 was encoded without"),
        ("short", r"known_masks must have one entry per array \(2\), got 1"),
    ],
)
def test_decode_refuses_missing_or_wrong_masks(masked_update, decode_masks, message):
    update, mask = masked_update
    payload = compress.encode([update, np.ones(3)], known_masks=[mask, None])
    wrong = {
        "nones": [None, None],
        "shifted": [np.roll(mask, 1), None],
        "fewer": [mask & (np.arange(50) > 0), None],
        "transposed": [mask.T.copy(), None],
        "float": [mask.astype(np.float32), None],
        "extra": [mask, np.ones(3, dtype=bool)],
        "short": [mask],
    }
    with pytest.raises(ValueError, match=message):
        compress.decode(payload, known_masks=wrong.get(decode_masks, decode_masks))


# --- argument validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((-1, 0.5), ValueError, r"num_values must be an integer >= 0, got -1"),
        ((2.5, 0.5), TypeError, r"num_values must be an integer >= 0, got 2.5"),
        ((True, 0.5), TypeError, r"num_values must be an integer >= 0, got True"),
        ((10, 1.5), ValueError, r"density must be a number in \[0, 1\], got 1.5"),
        ((10, -0.1), ValueError, r"density must be a number in \[0, 1\], got -0.1"),
        ((10, math.nan), ValueError, r"density must be a number in \[0, 1\], got nan"),
        ((10, "0.5"), TypeError, r"density must be a number in \[0, 1\], got '0.5'"),
        ((10, 0.5, 0), ValueError, r"value_bits must be a number in \(0, inf\), got 0"),
        ((10, 0.5, math.inf), ValueError, r"value_bits must be a number in \(0, inf\), got inf"),
        ((10, 0.5, None), TypeError, r"value_bits must be a number in \(0, inf\), got None"),
    ],
)
def test_entropy_bound_bytes_validation(arguments, error, message):
    with pytest.raises(error, match=message):
        compress.entropy_bound_bytes(*arguments)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ((8, 0.5), 8 * 1 / 8 + 8 * 0.5 * 4),
        ((8, 0.5, 8), 8 * 1 / 8 + 8 * 0.5 * 1),
        ((1000, 0.0), 0.0),
        ((1000, 1.0), 4000.0),
        ((0, 0.3), 0.0),
        ((100, 0.25, 16), 100 * 0.8112781244591328 / 8 + 100 * 0.25 * 2),
        ((np.int64(1000), np.float32(1.0), 16), 2000.0),
    ],
)
def test_entropy_bound_bytes_values(arguments, expected):
    assert compress.entropy_bound_bytes(*arguments) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("arrays", "known_masks", "error", "message"),
    [
        (np.zeros(3), None, TypeError, r"arrays must be a sequence \(list or tuple\)"),
        ("abc", None, TypeError, r"arrays must be a sequence .*got str"),
        ([[1.0, 2.0]], None, TypeError, r"arrays\[0\] must be a NumPy array, got list"),
        ([np.zeros(2), None], None, TypeError, r"arrays\[1\] must be a NumPy array, got NoneType"),
        ([np.array([None])], None, TypeError, r"arrays\[0\] must have a dtype in .*got object"),
        ([np.zeros(2, np.complex64)], None, TypeError, r"arrays\[0\] .*got complex64"),
        ([np.zeros(2, "M8[s]")], None, TypeError, r"arrays\[0\] .*got datetime64\[s\]"),
        ([np.zeros(2)], np.ones(2, bool), TypeError, r"known_masks must be a sequence"),
        ([np.zeros(2)], [None, None], ValueError, r"known_masks must have one entry per array"),
        ([np.zeros(2)], [np.ones(2)], TypeError, r"known_masks\[0\] must be a boolean .*float64"),
        ([np.zeros(2)], [[True, True]], TypeError, r"known_masks\[0\] must be a boolean .*list"),
        ([np.zeros(2)], [np.ones(3, bool)], ValueError, r"known_masks\[0\] must have the shape"),
        (
            [np.array([0.0, 1.0])],
            [np.array([True, False])],
            ValueError,
            r"arrays\[0\] has 1 non-zero entries where known_masks\[0\] is False",
        ),
        (
            [np.array([0.0, -0.0])],
            [np.array([True, False])],
            ValueError,
            r"arrays\[0\] has 1 non-zero entries .*-0.0 counts as non-zero",
        ),
    ],
    ids=[
        "bare-array", "string", "list-element", "none-element", "object", "complex", "datetime",
        "masks-not-sequence", "masks-length", "mask-dtype", "mask-list", "mask-shape",
        "value-outside-mask", "negative-zero-outside-mask",
    ],
)  # fmt: skip
def test_encode_validation(arrays, known_masks, error, message):
    with pytest.raises(error, match=message):
        compress.encode(arrays, known_masks=known_masks)
