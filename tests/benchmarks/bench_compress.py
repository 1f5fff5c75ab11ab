"""Benchmark of prunefl_lite.compress: payload size vs the entropy bound, time vs zlib, per width.

Run as ``python tests/benchmarks/bench_compress.py``. For n = 400,000 float32 values with exactly
``round(n * density)`` non-zeros at uniformly random positions it prints, per value width (32 bits:
exact; 16 and 8 bits: quantised) and density:

* the payload over the entropy bound at that width (target <= 1.01), over the 32-bit payload and
  over zlib's (zlib is lossless: at 16 and 8 bits this compares bytes, not fidelity);
* the largest round-trip error over the array's scale (target <= 1 plus one float32 ulp of the
  largest value over the scale, the rounding of a level to float32; 0 at 32 bits, where the round
  trip must be bit-exact); every round trip must keep the zero pattern;
* the median time of ``decode(encode(a))`` over the median time of ``zlib.compress(a.tobytes())``
  (target <= 2). Codec and zlib runs are interleaved, in alternating order, so that machine noise
  hits both alike.

Exits with status 1 if a target is missed.
"""

import statistics
import sys
import time
import zlib

import numpy as np

from prunefl_lite import compress

NUM_VALUES = 400_000
DENSITIES = (1.0, 0.5, 0.3, 0.1, 0.05, 0.02, 0.01)
WIDTHS = (32, 16, 8)
REPETITIONS = 21
SIZE_TARGET = 1.01
TIME_TARGET = 2.0
ERROR_TARGET = 1.0


def sparse_float32(n, density, rng):
    """Exactly round(n * density) non-zero normal float32 values at uniformly random positions."""
    count = round(n * density)
    array = np.zeros(n, dtype=np.float32)
    values = rng.standard_normal(count).astype(np.float32)
    values[values == 0] = 1.0
    array[rng.choice(n, size=count, replace=False)] = values
    return array


def codec_round_trip(array, value_bits, rng):
    """Encode and decode one array at ``value_bits``; return the decoded array."""
    return compress.decode(compress.encode([array], value_bits=value_bits, rng=rng))[0]


def zlib_compress(array):
    """Compress the array's bytes with zlib at its default level."""
    return zlib.compress(array.tobytes())


def seconds(function, *arguments):
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    function(*arguments)
    return time.perf_counter() - start


def median_times(arrays, rng):
    """Median seconds of the codec round trip and of zlib per (width, density), interleaved."""
    times = {key: ([], []) for key in arrays}
    for repetition in range(REPETITIONS):
        for (value_bits, density), array in arrays.items():
            codec_times, zlib_times = times[value_bits, density]
            if repetition % 2:
                zlib_times.append(seconds(zlib_compress, array))
            codec_times.append(seconds(codec_round_trip, array, value_bits, rng))
            if not repetition % 2:
                zlib_times.append(seconds(zlib_compress, array))
    return {key: (statistics.median(c), statistics.median(z)) for key, (c, z) in times.items()}


def round_trip_error(array, value_bits, rng):
    """Largest round-trip error over the scale and its target (0, 0 if exact), checking zeros."""
    payload = compress.encode([array], value_bits=value_bits, rng=rng)
    decoded, scale = compress.decode(payload)[0], compress.describe(payload)[0]["scale"]
    assert np.array_equal(decoded != 0, array != 0), "the sparsity pattern changed"
    if scale is None:
        assert decoded.tobytes() == array.tobytes(), "an exact round trip is not bit-exact"
        return 0.0, 0.0
    slack = float(np.spacing(np.max(np.abs(array)))) / scale  # float32 rounding of a level
    error = float(np.max(np.abs(decoded.astype(np.float64) - array))) / scale
    return error, ERROR_TARGET + slack


def row(key, array, seconds_pair, rng):
    """Format one row of the table; return it and whether every target was met."""
    value_bits, density = key
    payload = compress.encode([array], value_bits=value_bits, rng=rng)
    exact = len(compress.encode([array]))
    bound = compress.entropy_bound_bytes(NUM_VALUES, density, value_bits=value_bits)
    zlib_bytes = len(zlib_compress(array))
    error, error_target = round_trip_error(array, value_bits, rng)
    codec_seconds, zlib_seconds = seconds_pair
    size_ratio, time_ratio = len(payload) / bound, codec_seconds / zlib_seconds
    met = size_ratio <= SIZE_TARGET and time_ratio <= TIME_TARGET and error <= error_target
    text = (
        f"{value_bits:>4} {density:>7} {compress.describe(payload)[0]['encoding']:>11} "
        f"{len(payload):>10,} {bound:>10,.0f} {size_ratio:>7.4f} {len(payload) / exact:>6.3f} "
        f"{zlib_bytes:>10,} {len(payload) / zlib_bytes:>6.3f} {error:>7.3f} "
        f"{codec_seconds * 1e3:>9.2f} {zlib_seconds * 1e3:>8.2f} {time_ratio:>7.3f}  "
        f"{'ok' if met else 'MISSED'}"
    )
    return text, met


def main():
    """Print the table and return the process exit status."""
    rng = np.random.default_rng(0)
    data = {density: sparse_float32(NUM_VALUES, density, rng) for density in DENSITIES}
    arrays = {(bits, density): data[density] for bits in WIDTHS for density in DENSITIES}
    times = median_times(arrays, rng)
    print(f"n = {NUM_VALUES:,} float32, medians of {REPETITIONS} interleaved repetitions")
    print(
        f"{'bits':>4} {'density':>7} {'encoding':>11} {'payload B':>10} {'bound B':>10} "
        f"{'/bound':>7} {'/32bit':>6} {'zlib B':>10} {'/zlib':>6} {'err/s':>7} "
        f"{'codec ms':>9} {'zlib ms':>8} {'t/zlib':>7}  targets"
    )
    missed = False
    for key, array in arrays.items():
        text, met = row(key, array, times[key], rng)
        missed |= not met
        print(text)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
