"""Benchmark of prunefl_lite.compress: payload size vs the entropy bound, time vs zlib.

Run as ``python tests/benchmarks/bench_compress.py``. For n = 400,000 float32 values with exactly
``round(n * density)`` non-zeros at uniformly random positions it prints, per density, the payload
over the entropy bound (target <= 1.01), the payload over zlib's, and the median time of
``decode(encode(a))`` over the median time of ``zlib.compress(a.tobytes())`` (target <= 2).
Codec and zlib runs are interleaved, in alternating order, so that machine noise hits both alike.
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
REPETITIONS = 21
SIZE_TARGET = 1.01
TIME_TARGET = 2.0


def sparse_float32(n, density, rng):
    """Exactly round(n * density) non-zero normal float32 values at uniformly random positions."""
    count = round(n * density)
    array = np.zeros(n, dtype=np.float32)
    values = rng.standard_normal(count).astype(np.float32)
    values[values == 0] = 1.0
    array[rng.choice(n, size=count, replace=False)] = values
    return array


def codec_round_trip(array):
    """Encode and decode one array; return the decoded array."""
    return compress.decode(compress.encode([array]))[0]


def zlib_compress(array):
    """Compress the array's bytes with zlib at its default level."""
    return zlib.compress(array.tobytes())


def seconds(function, argument):
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    function(argument)
    return time.perf_counter() - start


def median_times(arrays):
    """Median seconds of the codec round trip and of zlib per array, interleaved."""
    times = {density: ([], []) for density in arrays}
    for repetition in range(REPETITIONS):
        for density, array in arrays.items():
            codec_times, zlib_times = times[density]
            if repetition % 2:
                zlib_times.append(seconds(zlib_compress, array))
                codec_times.append(seconds(codec_round_trip, array))
            else:
                codec_times.append(seconds(codec_round_trip, array))
                zlib_times.append(seconds(zlib_compress, array))
    return {d: (statistics.median(c), statistics.median(z)) for d, (c, z) in times.items()}


def main():
    """Print the table and return the process exit status."""
    rng = np.random.default_rng(0)
    arrays = {density: sparse_float32(NUM_VALUES, density, rng) for density in DENSITIES}
    for array in arrays.values():
        assert codec_round_trip(array).tobytes() == array.tobytes()
    times = median_times(arrays)
    print(f"n = {NUM_VALUES:,} float32, medians of {REPETITIONS} interleaved repetitions")
    header = (
        f"{'density':>7} {'encoding':>11} {'payload B':>10} {'bound B':>10} {'/bound':>7} "
        f"{'zlib B':>10} {'/zlib':>6} {'codec ms':>9} {'zlib ms':>8} {'t/zlib':>7}  targets"
    )
    print(header)
    missed = False
    for density, array in arrays.items():
        payload = compress.encode([array])
        bound = compress.entropy_bound_bytes(NUM_VALUES, density)
        zlib_bytes = len(zlib_compress(array))
        codec_seconds, zlib_seconds = times[density]
        size_ratio, time_ratio = len(payload) / bound, codec_seconds / zlib_seconds
        met = size_ratio <= SIZE_TARGET and time_ratio <= TIME_TARGET
        missed |= not met
        print(
            f"{density:>7} {compress.describe(payload)[0]['encoding']:>11} {len(payload):>10,} "
            f"{bound:>10,.0f} {size_ratio:>7.4f} {zlib_bytes:>10,} "
            f"{len(payload) / zlib_bytes:>6.3f} {codec_seconds * 1e3:>9.2f} "
            f"{zlib_seconds * 1e3:>8.2f} {time_ratio:>7.3f}  {'ok' if met else 'MISSED'}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
