"""Tests of prunefl_lite.compress: bit-exact round trips, encoding choice, sizes, corruption."""

import math
import struct
import zlib

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


# --- value width: 32 bits is the version-1 format, bit for bit ---------------------------------

# encode([float32 [0, 1.5, 0, 0, -2], int8 [1, 0, 3]]) as written before value_bits existed
VERSION_1_PAYLOAD = "50464c4301020a01050001020101030000480000c03f000000c0010003bc01d179"
VERSION_1_ARRAYS = [np.array([0, 1.5, 0, 0, -2], np.float32), np.array([1, 0, 3], np.int8)]


def test_a_payload_written_before_value_bits_decodes_the_same_and_is_rewritten_the_same():
    payload = bytes.fromhex(VERSION_1_PAYLOAD)
    for decoded, original in zip(compress.decode(payload), VERSION_1_ARRAYS, strict=True):
        assert_bit_exact(decoded, original)
    assert compress.encode(VERSION_1_ARRAYS) == payload
    assert compress.encode(VERSION_1_ARRAYS, value_bits=32, rng=5) == payload


@pytest.mark.parametrize("dtype", DTYPES)
def test_value_bits_32_is_the_default_and_exact(dtype):
    array = random_array(dtype, (3000,), 0.3, seed=6)
    payload = compress.encode([array], value_bits=32)
    assert payload == compress.encode([array])
    assert_bit_exact(compress.decode(payload)[0], array)


# --- value width: quantised values at 16 and 8 bits --------------------------------------------

WIDTHS = [16, 8]
FLOATS_WIDER = [("float32", 16), ("float32", 8), ("float64", 16), ("float64", 8), ("float16", 8)]


def normal_sparse(n, density, dtype="float32", seed=0):
    """round(n * density) non-zero normal values (none exactly zero) at random positions."""
    rng = np.random.default_rng(seed)
    count = round(n * density)
    array = np.zeros(n, dtype=dtype)
    values = rng.standard_normal(count)
    array[rng.choice(n, size=count, replace=False)] = np.where(values == 0, 1.0, values)
    return array


def quantised(arrays, value_bits, seed=0, known_masks=None):
    """Encode at value_bits with a seeded generator; return the decoded arrays and the scales."""
    payload = compress.encode(
        arrays, known_masks=known_masks, value_bits=value_bits, rng=np.random.default_rng(seed)
    )
    scales = [info["scale"] for info in compress.describe(payload)]
    return compress.decode(payload, known_masks=known_masks), scales


@pytest.mark.parametrize("density", [1.0, 0.3, 0.01])
@pytest.mark.parametrize(("dtype", "value_bits"), FLOATS_WIDER)
def test_quantised_error_per_value_is_at_most_the_scale(dtype, value_bits, density):
    array = normal_sparse(20_000, density, dtype)
    [decoded], [scale] = quantised([array], value_bits)
    largest = np.max(np.abs(array))
    assert scale == pytest.approx(float(largest) / (2 ** (value_bits - 1) - 0.5), rel=1e-12)
    # The decoded value is one of the two grid levels around v, then rounded to the dtype: the
    # rounding adds at most half an ulp of a level, below one ulp of the largest value.
    error = np.abs(decoded.astype(np.float64) - array.astype(np.float64))
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    assert np.max(error) <= scale + np.spacing(largest)
    assert np.max(error) > 0.5 * scale  # it did quantise: with 200+ values some land mid-level


@pytest.mark.parametrize("value_bits", WIDTHS)
def test_quantisation_is_unbiased(value_bits):
    # A grid scaled by a large value puts the small ones between levels at fractions in (0, 1).
    array = np.r_[np.linspace(-1, 1, 255), 40.0].astype(np.float32)
    num_decodes = 400
    rng = np.random.default_rng(7)
    decodes = np.array(
        [
            compress.decode(compress.encode([array], value_bits=value_bits, rng=rng))[0]
            for _ in range(num_decodes)
        ],
        dtype=np.float64,
    )
    scale = float(array.max()) / (2 ** (value_bits - 1) - 0.5)
    fraction = (array / scale - 0.5) % 1  # where v sits between its two levels
    variance = scale**2 * fraction * (1 - fraction)  # of one decode: two levels, scale apart
    error = decodes.mean(axis=0) - array
    standard_error = np.sqrt(variance / num_decodes)
    moving = (variance > 0) & (array != 0)  # zeros and values on a level never move
    assert np.all(error[~moving] == 0)
    z = error[moving] / standard_error[moving]
    # Each z is about N(0, 1): |z| > 5 has probability 6e-7 per value, 2e-4 over all 256 values;
    # the pooled z of all values catches a small common bias that no single value shows.
    assert np.max(np.abs(z)) < 5
    assert abs(np.sum(error[moving]) / np.sqrt(np.sum(standard_error[moving] ** 2))) < 4
    # Two levels are scale apart (plus the float32 rounding of each): the spread is half that.
    assert np.all(decodes.std(axis=0) <= (scale + np.spacing(np.float32(40))) / 2)


@pytest.mark.parametrize("value_bits", WIDTHS)
def test_zeros_and_the_sparsity_pattern_are_exact(value_bits):
    array = normal_sparse(5000, 0.2, seed=8)
    array[:5] = [-0.0, 1e-30, -1e-30, 0.0, 0.0]  # tiny values land near zero: still non-zero
    [decoded], [scale] = quantised([array], value_bits)
    assert np.array_equal(decoded != 0, array != 0)
    assert abs(decoded[1]) == abs(decoded[2]) == np.float32(scale / 2)  # the levels nearest 0
    assert not np.any(np.signbit(decoded[array == 0]))  # -0.0 is a zero and decodes to +0.0


@pytest.mark.parametrize("value_bits", WIDTHS)
def test_known_masks_keep_working_when_quantised(value_bits):
    rng = np.random.default_rng(9)
    mask = rng.random((100, 40)) < 0.3
    update = np.where(mask, rng.standard_normal((100, 40)), 0).astype(np.float32)
    update[mask & (rng.random((100, 40)) < 0.2)] = 0  # kept positions holding a zero
    update[~mask & (rng.random((100, 40)) < 0.5)] = -0.0  # -0.0 is a zero when quantised
    payload = compress.encode([update], known_masks=[mask], value_bits=value_bits, rng=1)
    [decoded] = compress.decode(payload, known_masks=[mask])
    assert np.array_equal(decoded != 0, update != 0)
    assert len(payload) < len(compress.encode([update], value_bits=value_bits, rng=1))
    with pytest.raises(ValueError, match=r"known_masks\[0\] differs from the mask"):
        compress.decode(payload, known_masks=[np.roll(mask, 1)])


@pytest.mark.parametrize("value_bits", WIDTHS)
@pytest.mark.parametrize(
    "dtype", ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
)
def test_bool_and_integer_arrays_are_untouched(dtype, value_bits):
    array = random_array(dtype, (2000,), 0.3, seed=10)
    payload = compress.encode([array], value_bits=value_bits, rng=0)
    assert payload == compress.encode([array])
    assert_bit_exact(compress.decode(payload)[0], array)


def nan_array():
    array = normal_sparse(300, 0.5, seed=11)
    array[[4, 9]] = [np.nan, -0.0]
    return array


UNQUANTISED = {
    "float16": normal_sparse(300, 0.5, "float16", seed=11),  # no wider than 16 bits
    "nan": nan_array(),
    "inf": np.r_[np.zeros(9), np.inf],
    "all-zero": np.zeros(50, np.float32),
    "empty": np.zeros(0, np.float64),
    "tiny-scale": np.full(20, np.finfo(np.float32).smallest_subnormal),  # scale / 2 -> 0.0
}


@pytest.mark.parametrize(
    ("name", "value_bits"),
    [(name, bits) for name in UNQUANTISED for bits in WIDTHS if (name, bits) != ("float16", 8)],
)
def test_floats_that_cannot_or_need_not_be_quantised_are_sent_exactly(name, value_bits):
    array = UNQUANTISED[name]
    payload = compress.encode([array], value_bits=value_bits, rng=0)
    assert payload == compress.encode([array])
    [info] = compress.describe(payload)
    assert info["scale"] is None and info["value_bits"] == array.dtype.itemsize * 8
    assert_bit_exact(compress.decode(payload)[0], array)


@pytest.mark.parametrize("value_bits", WIDTHS)
def test_describe_reports_width_and_scale(value_bits):
    arrays = [np.r_[0.0, -3.0, 1.0], np.arange(4, dtype=np.int32)]
    payload = compress.encode(arrays, value_bits=value_bits, rng=0)
    infos = compress.describe(payload)
    assert [info["value_bits"] for info in infos] == [value_bits, 32]
    assert infos[0]["scale"] == 3.0 / (2 ** (value_bits - 1) - 0.5)
    assert infos[1]["scale"] is None
    assert infos[0]["encoding"] == "bitmask"  # a zero: raw cannot hold it, every code is a level
    dense = compress.encode([np.r_[2.0, -3.0, 1.0]], value_bits=value_bits, rng=0)
    assert encodings(dense) == ["raw"]


@pytest.mark.parametrize("value_bits", WIDTHS)
def test_the_same_seed_gives_the_same_payload(value_bits):
    array = normal_sparse(10_000, 0.1, seed=12)

    def payload(rng):
        return compress.encode([array, array], value_bits=value_bits, rng=rng)

    assert payload(3) == payload(3) == payload(np.random.default_rng(3))
    assert payload(3) != payload(4)
    generator = np.random.default_rng(3)
    assert payload(generator) != payload(generator)  # a generator moves on between calls


# --- value width: sizes against the entropy bound ----------------------------------------------


@pytest.mark.parametrize("density", [0.5, 0.3, 0.1, 0.05, 0.02, 0.01])
@pytest.mark.parametrize("value_bits", [32, 16, 8])
def test_size_against_the_entropy_bound_at_each_width(value_bits, density):
    # Margin: Golomb-Rice with its best k spends at most 0.12 bits per non-zero above the
    # entropy of geometric gaps (computed for densities 0.001-0.5), under 0.8 % of the 8-bit
    # bound; the fixed cost is under 40 bytes (header, scale f64, checksum, padding).
    # Measured here at 8 bits: 1.0002 (0.5) to 1.0095 (0.01, where the 40 bytes weigh 0.8 %).
    n = 200_000
    payload = compress.encode([normal_sparse(n, density)], value_bits=value_bits, rng=0)
    bound = compress.entropy_bound_bytes(n, density, value_bits=value_bits)
    assert bound <= len(payload) <= 1.01 * bound + 40


# --- value width: corruption and argument validation -------------------------------------------


@pytest.fixture(scope="module")
def quantised_payload():
    mask = np.zeros(40, dtype=bool)
    mask[::3] = True
    arrays = [normal_sparse(300, 0.05), np.r_[1.0, -2.0, 0.5], np.where(mask, 0.25, 0.0)]
    return compress.encode(arrays, known_masks=[None, None, mask], value_bits=8, rng=0)


def test_every_truncation_and_bit_flip_of_a_quantised_payload_is_refused(quantised_payload):
    for length in range(len(quantised_payload)):
        with pytest.raises(ValueError, match="truncated|bad magic"):
            compress.decode(quantised_payload[:length])
    for position in range(len(quantised_payload) * 8):
        corrupted = bytearray(quantised_payload)
        corrupted[position // 8] ^= 1 << (position % 8)
        with pytest.raises(ValueError):
            compress.decode(bytes(corrupted))


def with_checksum(body):
    """A payload body with a valid crc32 appended, to reach the header checks behind it."""
    return body + zlib.crc32(body).to_bytes(4, "little")


# magic, version, 1 array, float32 (code 10), ndim 1, 2 entries, flags 2 (quantised)
QUANTISED_HEADER = b"PFLC\x01\x01\x0a\x01\x02\x02"


def test_a_hand_written_quantised_payload_decodes_as_the_format_says():
    # value bits 8, scale 2.0, raw, codes 127 and -128: levels (c + 1/2) * scale
    body = QUANTISED_HEADER + b"\x08" + struct.pack("<d", 2.0) + b"\x00\x7f\x80"
    [decoded] = compress.decode(with_checksum(body))
    assert decoded.tolist() == [255.0, -255.0] and decoded.dtype == np.float32


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"PFLC\x01\x01\x0a\x01\x02\x04\x00", r"array 0 has flags 4, not a sum of 1 and 2"),
        (
            QUANTISED_HEADER + b"\x0c" + struct.pack("<d", 1.0) + b"\x00" + bytes(2),
            r"array 0 is float32 quantised to 12 bits, which encode never writes",
        ),
        (
            QUANTISED_HEADER + b"\x20" + struct.pack("<d", 1.0) + b"\x00" + bytes(8),
            r"array 0 is float32 quantised to 32 bits",
        ),
        (
            b"PFLC\x01\x01\x05\x01\x02\x02\x08" + struct.pack("<d", 1.0) + b"\x00" + bytes(8),
            r"array 0 is int32 quantised to 8 bits",
        ),
        (
            QUANTISED_HEADER + b"\x08" + struct.pack("<d", math.nan) + b"\x00" + bytes(2),
            r"array 0 has scale nan, not finite and > 0",
        ),
        (
            QUANTISED_HEADER + b"\x08" + struct.pack("<d", 0.0) + b"\x00" + bytes(2),
            r"array 0 has scale 0.0, not finite and > 0",
        ),
        (QUANTISED_HEADER + b"\x08" + struct.pack("<d", 1.0) + b"\x00" + bytes(3), "inconsistent"),
        (QUANTISED_HEADER + b"\x08" + struct.pack("<d", 1.0) + b"\x00" + bytes(1), "truncated"),
    ],
    ids=["flags", "bits-12", "bits-32", "int", "nan-scale", "zero-scale", "long", "short"],
)
def test_quantisation_header_corruption_messages(body, message):
    with pytest.raises(ValueError, match=message):
        compress.decode(with_checksum(body))


@pytest.mark.parametrize(
    ("value_bits", "error", "message"),
    [
        (12, ValueError, r"value_bits must be one of 8, 16, 32, got 12"),
        (64, ValueError, r"value_bits must be one of 8, 16, 32, got 64"),
        (0, ValueError, r"value_bits must be one of 8, 16, 32, got 0"),
        (-8, ValueError, r"value_bits must be one of 8, 16, 32, got -8"),
        (True, TypeError, r"value_bits must be one of 8, 16, 32, got True"),
        (np.True_, TypeError, r"value_bits must be one of 8, 16, 32, got (np\.)?True_?"),
        (8.0, TypeError, r"value_bits must be one of 8, 16, 32, got 8.0"),
        ("8", TypeError, r"value_bits must be one of 8, 16, 32, got '8'"),
        (None, TypeError, r"value_bits must be one of 8, 16, 32, got None"),
    ],
)
def test_value_bits_validation(value_bits, error, message):
    with pytest.raises(error, match=message):
        compress.encode([np.ones(3)], value_bits=value_bits, rng=0)


@pytest.mark.parametrize(
    ("value_bits", "rng", "error", "message"),
    [
        (8, None, TypeError, r"rng must be a numpy.random.Generator or an integer seed >= 0 "
         r"when value_bits is 8, got None"),
        (16, None, TypeError, r"rng must be .* when value_bits is 16, got None"),
        (8, -1, ValueError, r"rng must be a numpy.random.Generator or an integer seed >= 0, "
         r"got -1"),
        (8, True, TypeError, r"rng must be .*, got True"),
        (8, 1.5, TypeError, r"rng must be .*, got 1.5"),
        (32, "seed", TypeError, r"rng must be .*, got 'seed'"),
        (8, np.random.RandomState(0), TypeError, r"rng must be .*, got RandomState"),
    ],
)  # fmt: skip
def test_rng_validation(value_bits, rng, error, message):
    with pytest.raises(error, match=message):
        compress.encode([np.ones(3)], value_bits=value_bits, rng=rng)


def test_numpy_integers_are_accepted_for_value_bits_and_seed():
    array = normal_sparse(100, 0.5)
    expected = compress.encode([array], value_bits=8, rng=2)
    assert compress.encode([array], value_bits=np.int64(8), rng=np.uint8(2)) == expected
