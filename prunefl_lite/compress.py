"""Encoders and decoders for (sparse) weight payloads, bit-exact or quantised; their entropy bound.

``encode`` turns a list of NumPy arrays (a model's weights or an update) into one ``bytes``
payload; ``len(payload)`` is what a client or server really sends. Per array it picks the smallest
of three encodings:

* ``raw``: the dense little-endian bytes;
* ``bitmask``: one bit per entry (``np.packbits``) saying which entries are non-zero, then the
  non-zero values;
* ``golomb-rice``: the gaps between non-zero positions, Golomb-Rice coded with the parameter ``k``
  that is best for this array, then the non-zero values. The unary quotients of all gaps form one
  bit stream and the ``k``-bit remainders a second, fixed-width one: the size equals that of the
  interleaved code and both directions vectorise.

An entry is "zero" when its bit pattern is all zeros, so (at the default ``value_bits=32``)
``-0.0`` and NaN are values like any other and survive the round trip bit for bit. (``w * mask``
turns negative pruned weights into ``-0.0``, which is sent as a value; ``w + 0.0`` or
``np.where(mask, w, 0)`` makes them ``+0.0``.)

With ``known_masks`` the receiver already holds an array's mask, so only the entries at the mask's
``True`` positions are coded (with the same choice of encodings).

``value_bits`` sets how wide each sent value of a float array is. At 32 (the default) every value
is sent exactly, at its dtype's width (float64 included), and the payload is what it always was.
At 16 or 8, a float array wider than that sends its non-zero values as ``value_bits``-bit codes
with one float64 ``scale`` per array, rounded stochastically and without bias onto a grid that
has no zero level (a "mid-rise" grid, the levels ``(c + 1/2) * scale`` for the signed codes
``c`` in ``[-2**(b-1), 2**(b-1) - 1]``):

* ``scale = max|v| / (2**(b-1) - 1/2)``, so ``max|v|`` is a level (the outermost one);
* ``c = floor(v / scale - 1/2 + u)`` with ``u ~ U[0, 1)`` drawn from the caller's ``rng``, so the
  decoded ``(c + 1/2) * scale`` is one of the two levels around ``v``: within ``scale`` of it and
  equal to it on average (``E[floor(y + u)] = y``), up to the rounding of the level to the dtype;
* zeros (``+0.0`` and ``-0.0``) are not values but positions, coded as above, and decode to
  ``+0.0``; since no level is zero, a non-zero value never decodes to zero, so the decoded array
  has exactly the input's zero pattern (and ``known_masks`` work unchanged).

Codes take every one of the ``2**b`` patterns, so a quantised array is coded raw only when it has
no zero. Bool and integer arrays, float arrays no wider than ``value_bits`` (float16 at
16 bits), and float arrays that cannot be quantised (a NaN or infinity, no non-zero value, or a
scale so small that the level nearest zero would round to zero in the dtype) are sent exactly, as
at 32 bits, whatever ``value_bits`` says: a NaN update stays a NaN for the receiver to reject.
``describe`` says which arrays were quantised and with which scale.

Payload format, version 1 (integers are unsigned LEB128 varints unless a width is given, all
fixed-width integers little-endian)::

    magic b"PFLC" | version u8 | number of arrays
    per array:  dtype code u8 | ndim | dims... | flags u8 (bit 0: known mask, bit 1: quantised)
                [| mask count | mask crc32 u32 (bit 0)] [| value bits u8 | scale f64 (bit 1)]
                | encoding u8 (0 raw, 1 bitmask, 2 golomb-rice)
                [| nnz (bitmask, golomb-rice)] [| k u8 | unary bit count (golomb-rice)]
    sections of every array in order:  raw: values | bitmask: mask bits, values
                                       | golomb-rice: unary bits, remainder bits, values
    crc32 u32 of everything before it

Values are the dtype's bit patterns, or for a quantised array the ``value bits``-wide two's
complement codes ``c``. Each section's byte length follows from the counts in the header, so
``decode`` knows the exact payload length before touching a section and refuses truncated, padded
or corrupted payloads. Bit 1 of the flags byte was added to version 1 without changing anything
else: every earlier payload is still valid and decodes the same, and an earlier decoder refuses a
quantised payload at the flags byte (it accepted only 0 and 1) rather than misread it.
"""

import functools
import math
import numbers
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prunefl_lite.validate import check_choice, check_int, check_number

MAGIC = b"PFLC"
FORMAT_VERSION = 1
ENCODINGS = ("raw", "bitmask", "golomb-rice")
_RAW, _BITMASK, _RICE = range(len(ENCODINGS))
_CHECKSUM_BYTES = 4
_MAX_NDIM = 64
_MAX_RICE_PARAMETER = 62
VALUE_BITS = (8, 16, 32)
_EXACT_BITS = 32
_MASK_FLAG, _QUANTISED_FLAG = 1, 2
_SCALE_BYTES = 8
_DTYPES = tuple(
    np.dtype(name).newbyteorder("<")
    for name in (
        "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
        "float16", "float32", "float64",
    )
)  # fmt: skip


def encode(arrays, known_masks=None, value_bits=32, rng=None):
    """Encode arrays into one self-describing, checksummed payload.

    Args:
        arrays: A sequence (list or tuple) of NumPy arrays of a bool, integer or float dtype
            (1 to 8 bytes per entry), any shape. Big-endian input decodes as little-endian.
        known_masks: None, or one entry per array: None, or a boolean array of the array's shape
            that the receiver already holds. Only the entries where the mask is True are sent.
        value_bits: 32 (every value exact), 16 or 8 (float arrays wider than that send their
            non-zero values as unbiased stochastically rounded codes; see the module docstring).
        rng: The ``np.random.Generator`` (or an int seed for one) that draws the stochastic
            rounding; required when ``value_bits`` is 16 or 8, unused at 32.

    Returns:
        The payload as ``bytes``.

    Raises:
        TypeError: If ``arrays`` is not a sequence of arrays of a supported dtype, a mask is
            not a boolean array, ``value_bits`` is not an int or ``rng`` is missing or not a
            generator or an int.
        ValueError: If ``known_masks`` has the wrong length, a mask's shape differs from its
            array's, an array has a non-zero entry where its mask is False, ``value_bits`` is not
            8, 16 or 32, or a seed is negative.

    Example:
        >>> import numpy as np
        >>> weights = np.zeros(1000, dtype=np.float32)
        >>> weights[[3, 500]] = [1.5, -0.0]
        >>> payload = encode([weights])
        >>> len(payload) < weights.nbytes // 100
        True
        >>> decode(payload)[0].tobytes() == weights.tobytes()
        True
        >>> small = encode([weights], value_bits=8, rng=np.random.default_rng(0))
        >>> decode(small)[0][[3, 500]]  # 1.5 is the largest value: a level; -0.0 is a zero
        array([1.5, 0. ], dtype=float32)
    """
    value_bits = _check_value_bits(value_bits)
    rng = _check_rng(rng, value_bits)
    arrays = _check_sequence("arrays", arrays)
    masks = _check_known_masks(known_masks, len(arrays))
    headers, sections = [MAGIC, bytes([FORMAT_VERSION]), _varint(len(arrays))], []
    for index, (array, mask) in enumerate(zip(arrays, masks, strict=True)):
        header, array_sections = _encode_array(index, array, mask, value_bits, rng)
        headers.append(header)
        sections.extend(array_sections)
    parts = headers + sections
    checksum = functools.reduce(lambda crc, part: zlib.crc32(part, crc), parts, 0)
    return b"".join([*parts, checksum.to_bytes(_CHECKSUM_BYTES, "little")])


def decode(payload, known_masks=None):
    """Decode a payload made by :func:`encode` back into the arrays.

    The value width is read from the payload: arrays sent exactly come back bit for bit, and
    quantised arrays come back with the input's zeros and each non-zero value at its level.

    Args:
        payload: The ``bytes`` (or any bytes-like object) returned by :func:`encode`.
        known_masks: The masks given to :func:`encode` (None where none was given).

    Returns:
        A list of new, writable arrays with the encoded dtypes and shapes (and bit patterns,
        unless quantised).

    Raises:
        TypeError: If ``payload`` is not bytes-like.
        ValueError: If the payload is truncated or corrupted (bad magic, unsupported version,
            inconsistent lengths, checksum mismatch), or ``known_masks`` are missing or differ
            from the masks used to encode.

    Example:
        >>> import numpy as np
        >>> mask = np.array([True, False, True])
        >>> payload = encode([np.array([2, 0, 5], dtype=np.int8)], known_masks=[mask])
        >>> decode(payload, known_masks=[mask])
        [array([2, 0, 5], dtype=int8)]
    """
    data, records, offset = _read_verified(payload)
    masks = _check_known_masks(known_masks, len(records))
    arrays = []
    for index, (record, mask) in enumerate(zip(records, masks, strict=True)):
        sections = []
        for size in record.section_sizes():
            sections.append(data[offset : offset + size])
            offset += size
        arrays.append(_decode_array(index, record, sections, mask))
    return arrays


def describe(payload):
    """Describe each array of a payload: dtype, shape, encoding, mask use, value width and bytes.

    Args:
        payload: The ``bytes`` returned by :func:`encode`.

    Returns:
        One dict per array with keys ``dtype`` (str), ``shape`` (tuple), ``encoding`` (one of
        ``ENCODINGS``), ``masked`` (bool), ``value_bits`` (int, the width of each sent value:
        8 or 16 if quantised, else the dtype's), ``scale`` (float, or None unless quantised)
        and ``section_bytes`` (int, header excluded).

    Raises:
        ValueError: If the payload is truncated or corrupted, as in :func:`decode`.

    Example:
        >>> import numpy as np
        >>> sparse = np.zeros(1000, dtype=np.float32)
        >>> sparse[7] = 1.0
        >>> dense = np.ones((2, 3), dtype=np.float16)
        >>> [info["encoding"] for info in describe(encode([sparse, dense]))]
        ['golomb-rice', 'raw']
    """
    _, records, _ = _read_verified(payload)
    return [
        {
            "dtype": str(record.dtype),
            "shape": record.shape,
            "encoding": ENCODINGS[record.encoding],
            "masked": record.mask_count is not None,
            "value_bits": record.value_itemsize * 8,
            "scale": record.scale,
            "section_bytes": sum(record.section_sizes()),
        }
        for record in records
    ]


def entropy_bound_bytes(num_values, density, value_bits=32):
    """Information-theoretic size of a sparse array with random non-zero positions, in bytes.

    Positions cost ``num_values * H(density)`` bits (``H`` the binary entropy, ``H(0) = H(1) = 0``)
    and each of the ``num_values * density`` non-zero values ``value_bits`` bits.

    The position term is the entropy of uniformly random positions, a lower bound for any code.
    The value term treats each value as an incompressible ``value_bits``-bit word: exact for
    float32 values sent bit for bit (32), and for :func:`encode`'s 16- and 8-bit codes pass 16 or
    8 (the payload's per-array scale, 8 bytes, is left out). It is not a lower bound on coding
    the codes themselves: codes of bell-shaped weights cluster near zero, have fewer than
    ``value_bits`` bits of entropy, and an entropy coder of the values could go below it.

    Args:
        num_values: Number of entries (the mask's True entries under a known mask), an int >= 0.
        density: Fraction of non-zero entries, in [0, 1].
        value_bits: Bits per non-zero value, a positive finite number.

    Returns:
        The bound in bytes, a float.

    Raises:
        TypeError: If an argument is not a number (``num_values``: not an int).
        ValueError: If an argument is out of its range.

    Example:
        >>> entropy_bound_bytes(8, 0.5)  # 8 position bits, 4 values of 4 bytes
        17.0
        >>> entropy_bound_bytes(8, 0.5, value_bits=8)  # 8 position bits, 4 values of 1 byte
        5.0
        >>> entropy_bound_bytes(1000, 0.0)
        0.0
    """
    check_int("num_values", num_values, 0)
    check_number("density", density, 0, 1)
    check_number("value_bits", value_bits, 0, low_open=True)
    return num_values * (_binary_entropy(density) + density * value_bits) / 8


def _binary_entropy(probability):
    """Return the entropy in bits of a coin with this probability (0 at 0 and 1)."""
    if probability in (0, 1):
        return 0.0
    return -probability * math.log2(probability) - (1 - probability) * math.log2(1 - probability)


def _check_sequence(name, value):
    """Return ``value`` as a list, raising TypeError unless it is a list or tuple-like sequence."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(
            f"{name} must be a sequence (list or tuple) of NumPy arrays, got {type(value).__name__}"
        )
    return list(value)


def _check_known_masks(known_masks, num_arrays):
    """Return one mask or None per array, checking the length of ``known_masks``."""
    if known_masks is None:
        return [None] * num_arrays
    masks = _check_sequence("known_masks", known_masks)
    if len(masks) != num_arrays:
        raise ValueError(
            f"known_masks must have one entry per array ({num_arrays}), got {len(masks)}"
        )
    return masks


def _check_value_bits(value_bits):
    """Return ``value_bits`` as a plain int if it is one of ``VALUE_BITS`` (bools refused)."""
    if isinstance(value_bits, bool) or not isinstance(value_bits, numbers.Integral):
        choices = ", ".join(map(str, VALUE_BITS))
        raise TypeError(f"value_bits must be one of {choices}, got {value_bits!r}")
    return int(check_choice("value_bits", value_bits, VALUE_BITS))


def _check_rng(rng, value_bits):
    """Return a generator for the stochastic rounding (None at 32 bits, where none is drawn)."""
    wanted = "a numpy.random.Generator or an integer seed >= 0"
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None and value_bits == _EXACT_BITS:
        return None
    if rng is None or isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        when = f" when value_bits is {value_bits}" if rng is None else ""
        raise TypeError(f"rng must be {wanted}{when}, got {rng!r}")
    if rng < 0:
        raise ValueError(f"rng must be {wanted}, got {rng!r}")
    return np.random.default_rng(int(rng))


def _check_array(index, array):
    """Return ``array`` as a C-contiguous little-endian array of a supported dtype."""
    if not isinstance(array, np.ndarray | np.generic):
        raise TypeError(f"arrays[{index}] must be a NumPy array, got {type(array).__name__}")
    dtype = array.dtype.newbyteorder("<")
    if dtype not in _DTYPES:
        supported = ", ".join(str(known) for known in _DTYPES)
        raise TypeError(f"arrays[{index}] must have a dtype in ({supported}), got {array.dtype}")
    return np.asarray(array, dtype=dtype, order="C")


def _check_mask(index, mask, shape):
    """Return ``mask`` flattened, checking its type and that it has the array's ``shape``."""
    if not isinstance(mask, np.ndarray) or mask.dtype != bool:
        found = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
        raise TypeError(f"known_masks[{index}] must be a boolean NumPy array or None, got {found}")
    if mask.shape != shape:
        raise ValueError(
            f"known_masks[{index}] must have the shape of arrays[{index}], {shape}, "
            f"got {mask.shape}"
        )
    return mask.reshape(-1)


def _mask_checksum(flat_mask):
    """Return the crc32 of a flat boolean mask, its fingerprint in the payload."""
    return zlib.crc32(np.packbits(flat_mask))


def _bit_patterns(array):
    """Return the entries of a little-endian array as a flat array of unsigned bit patterns."""
    return array.reshape(-1).view(f"<u{array.dtype.itemsize}")


def _varint(value):
    """Return ``value`` (a non-negative int) as an unsigned LEB128 varint."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_array(index, array, mask, value_bits, rng):
    """Return the header bytes and the sections of one array."""
    array = _check_array(index, array)
    scale = _quantisation_scale(array, value_bits)
    if scale is not None:
        array = np.where(array == 0, array.dtype.type(0), array)  # -0.0 is a zero, not a value
    bits = _bit_patterns(array)
    header = bytes([_DTYPES.index(array.dtype)]) + _varint(array.ndim)
    header += b"".join(_varint(dim) for dim in array.shape)
    flags = _MASK_FLAG if mask is not None else 0
    flags |= _QUANTISED_FLAG if scale is not None else 0
    header += bytes([flags])
    if mask is not None:
        mask_header, bits = _apply_mask(index, bits, mask, array.shape)
        header += mask_header
    codes = None
    if scale is not None:
        header += bytes([value_bits]) + np.float64(scale).astype("<f8").tobytes()
        codes = _quantise(bits.view(array.dtype)[bits != 0], scale, value_bits, rng)
    coding_header, sections = _encode_bits(bits, codes)
    return header + coding_header, sections


def _apply_mask(index, bits, mask, shape):
    """Return the mask's header fields and the bit patterns at its True entries.

    Raises ValueError if the array has a non-zero entry where the mask is False.
    """
    flat_mask = _check_mask(index, mask, shape)
    lost = np.count_nonzero(bits[~flat_mask])
    if lost:
        raise ValueError(
            f"arrays[{index}] has {lost} non-zero entries where known_masks[{index}] is "
            "False; they would be lost (zero means all bits zero, so -0.0 counts as non-zero "
            "unless the array is quantised)"
        )
    checksum = _mask_checksum(flat_mask).to_bytes(_CHECKSUM_BYTES, "little")
    return _varint(int(np.count_nonzero(flat_mask))) + checksum, bits[flat_mask]


def _quantisation_scale(array, value_bits):
    """Return the grid's scale if ``array`` is to be quantised to ``value_bits``, else None.

    None at 32 bits (exact, float64 included), for non-float arrays, floats no wider than
    ``value_bits``, non-finite or all-zero arrays, and scales whose level nearest zero,
    ``scale / 2``, rounds to zero in the dtype.
    """
    if value_bits == _EXACT_BITS or array.dtype.kind != "f" or array.size == 0:
        return None
    if value_bits >= array.dtype.itemsize * 8:
        return None
    largest = float(np.max(np.abs(array), initial=0))
    if not math.isfinite(largest) or largest == 0:  # NaN propagates through max
        return None
    scale = largest / (2 ** (value_bits - 1) - 0.5)
    return scale if array.dtype.type(scale / 2) != 0 else None


def _quantise(values, scale, value_bits, rng):
    """Return the unbiased stochastic codes of ``values`` on the grid, as unsigned patterns."""
    top = 2 ** (value_bits - 1)
    below = np.clip(values.astype(np.float64) / scale - 0.5, -top, top - 1)
    codes = np.floor(below + rng.random(values.size))
    codes = np.minimum(codes, top - 1)  # below + u can round up to top when u is near 1
    return codes.astype(f"<i{value_bits // 8}").view(f"<u{value_bits // 8}")


def _encode_bits(bits, codes=None):
    """Return the coding header and sections of the smallest encoding of flat bit patterns.

    ``codes``, for a quantised array, are the values to send for its non-zero entries, in
    order; as every code is a value, raw can code such an array only when it has no zero.
    """
    nnz = np.count_nonzero(bits)
    values = bits if codes is None else codes
    if nnz == bits.size or (
        codes is None and (bits.size - nnz) * bits.itemsize * 8 <= min(bits.size, nnz)
    ):
        # Raw is provably smallest: bitmask costs one bit per entry and Golomb-Rice at least one
        # per non-zero, more than the zeros raw spends. Skipping the search keeps dense fast.
        # (Codes are sent raw only here, with no zero to lose.)
        return bytes([_RAW]), [values]
    positions = np.flatnonzero(bits)
    gaps = np.diff(positions, prepend=-1) - 1
    rice_parameter = _best_rice_parameter(gaps)
    unary_bits = int(np.sum(gaps >> rice_parameter)) + gaps.size
    coding_headers = [
        bytes([_RAW]),
        bytes([_BITMASK]) + _varint(gaps.size),
        bytes([_RICE, rice_parameter]) + _varint(gaps.size) + _varint(unary_bits),
    ]
    sizes = [
        len(coding_header)
        + sum(
            _section_sizes(
                encoding, bits.size, values.itemsize, gaps.size, rice_parameter, unary_bits
            )
        )
        for encoding, coding_header in enumerate(coding_headers)
    ]
    if codes is not None:
        sizes[_RAW] = math.inf
    encoding = sizes.index(min(sizes))
    if encoding == _RAW:
        return coding_headers[_RAW], [bits]
    if codes is None:
        values = bits[positions]
    if encoding == _BITMASK:
        return coding_headers[_BITMASK], [np.packbits(bits != 0), values]
    unary, remainders = _rice_streams(gaps, rice_parameter, unary_bits)
    return coding_headers[_RICE], [unary, remainders, values]


def _section_sizes(encoding, length, itemsize, nnz, rice_parameter, unary_bits):
    """Return the byte length of each section of ``length`` coded entries of ``itemsize`` bytes."""
    if encoding == _RAW:
        return (length * itemsize,)
    if encoding == _BITMASK:
        return (-(-length // 8), nnz * itemsize)
    return (-(-unary_bits // 8), -(-nnz * rice_parameter // 8), nnz * itemsize)


def _best_rice_parameter(gaps):
    """Return the Rice parameter ``k`` that codes ``gaps`` in the fewest bits.

    The cost ``sum(gaps >> k) + len(gaps) * k`` is convex in ``k``, so a walk from the estimate
    ``log2(mean gap)`` to the nearest local minimum finds the global one in a few passes.
    """
    if gaps.size == 0:
        return 0

    @functools.cache
    def cost(k):
        return int(np.sum(gaps >> k)) + gaps.size * k

    k = max(int(gaps.mean()).bit_length() - 1, 0)
    while k > 0 and cost(k - 1) <= cost(k):
        k -= 1
    while k < _MAX_RICE_PARAMETER and cost(k + 1) < cost(k):
        k += 1
    return k


def _rice_streams(gaps, rice_parameter, unary_bits):
    """Return the packed unary stream of the quotients and the packed k-bit remainders."""
    unary = np.zeros(unary_bits, dtype=np.uint8)
    unary[np.cumsum((gaps >> rice_parameter) + 1) - 1] = 1
    shifts = np.arange(rice_parameter - 1, -1, -1)
    remainder_bits = ((gaps[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(unary), np.packbits(remainder_bits)


@dataclass(frozen=True)
class _Record:
    """The header fields of one encoded array."""

    dtype: np.dtype
    shape: tuple
    mask_count: int | None
    mask_checksum: int
    encoding: int
    nnz: int
    rice_parameter: int
    unary_bits: int
    value_bits: int = 0
    scale: float | None = None

    @property
    def value_itemsize(self):
        """Bytes per sent value: the dtype's, or the quantised codes'."""
        return self.dtype.itemsize if self.scale is None else self.value_bits // 8

    @property
    def coded_length(self):
        """Number of coded entries: all of them, or the mask's True entries."""
        return math.prod(self.shape) if self.mask_count is None else self.mask_count

    def section_sizes(self):
        """Return the byte length of each of this array's sections."""
        return _section_sizes(
            self.encoding,
            self.coded_length,
            self.value_itemsize,
            self.nnz,
            self.rice_parameter,
            self.unary_bits,
        )


class _Reader:
    """Reads header fields from the front of a payload, refusing to read past ``end``."""

    def __init__(self, data, end):
        self.data, self.offset, self.end = data, 0, end

    def take(self, count, what):
        """Return the next ``count`` bytes."""
        if self.offset + count > self.end:
            raise ValueError(
                f"truncated payload: {what} needs {count} bytes at offset {self.offset}, "
                f"{self.end - self.offset} left before the checksum"
            )
        self.offset += count
        return self.data[self.offset - count : self.offset]

    def byte(self, what):
        """Return the next byte as an int."""
        return self.take(1, what)[0]

    def varint(self, what):
        """Return the next unsigned LEB128 varint (at most 64 bits)."""
        value = 0
        for shift in range(0, 64, 7):
            byte = self.byte(what)
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise ValueError(f"corrupted payload: {what} is not a valid varint")


def _read_verified(payload):
    """Check a payload's framing, header, length and checksum; return data, records, offset."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
    data = bytes(payload)
    if not MAGIC.startswith(data[: len(MAGIC)]):
        raise ValueError(f"bad magic: payload starts with {data[: len(MAGIC)]!r}, not {MAGIC!r}")
    reader = _Reader(data, len(data) - _CHECKSUM_BYTES)
    reader.take(len(MAGIC), "magic")
    version = reader.byte("format version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"unsupported format version {version} (this decoder reads {FORMAT_VERSION})"
        )
    num_arrays = reader.varint("number of arrays")
    if num_arrays > len(data):
        raise ValueError(f"inconsistent lengths: {num_arrays} arrays in a {len(data)}-byte payload")
    records = [_read_record(reader, index) for index in range(num_arrays)]
    expected = reader.offset + sum(sum(r.section_sizes()) for r in records) + _CHECKSUM_BYTES
    if len(data) < expected:
        raise ValueError(f"truncated payload: header describes {expected} bytes, got {len(data)}")
    if len(data) > expected:
        raise ValueError(
            f"inconsistent lengths: header describes {expected} bytes, payload has {len(data)}"
        )
    stored = int.from_bytes(data[-_CHECKSUM_BYTES:], "little")
    if zlib.crc32(memoryview(data)[:-_CHECKSUM_BYTES]) != stored:
        raise ValueError("checksum mismatch: the payload is corrupted")
    return data, records, reader.offset


def _read_record(reader, index):
    """Read and sanity-check the header fields of array ``index``."""
    where = f"array {index}"
    code = reader.byte(f"{where} dtype code")
    if code >= len(_DTYPES):
        raise ValueError(f"corrupted payload: {where} has unknown dtype code {code}")
    ndim = reader.varint(f"{where} ndim")
    if ndim > _MAX_NDIM:
        raise ValueError(f"corrupted payload: {where} has {ndim} dimensions (max {_MAX_NDIM})")
    shape = tuple(reader.varint(f"{where} shape") for _ in range(ndim))
    flags = reader.byte(f"{where} flags")
    if flags & ~(_MASK_FLAG | _QUANTISED_FLAG):
        raise ValueError(f"corrupted payload: {where} has flags {flags}, not a sum of 1 and 2")
    mask_count, mask_checksum = None, 0
    if flags & _MASK_FLAG:
        mask_count = reader.varint(f"{where} mask count")
        mask_checksum = int.from_bytes(
            reader.take(_CHECKSUM_BYTES, f"{where} mask checksum"), "little"
        )
    value_bits, scale = 0, None
    if flags & _QUANTISED_FLAG:
        value_bits, scale = _read_quantisation(reader, where, _DTYPES[code])
    encoding = reader.byte(f"{where} encoding")
    if encoding >= len(ENCODINGS):
        raise ValueError(f"corrupted payload: {where} has unknown encoding id {encoding}")
    nnz = rice_parameter = unary_bits = 0
    if encoding == _RICE:
        rice_parameter = reader.byte(f"{where} Rice parameter")
    if encoding != _RAW:
        nnz = reader.varint(f"{where} non-zero count")
    if encoding == _RICE:
        unary_bits = reader.varint(f"{where} unary bit count")
    record = _Record(
        dtype=np.dtype(_DTYPES[code]),
        shape=shape,
        mask_count=mask_count,
        mask_checksum=mask_checksum,
        encoding=encoding,
        nnz=nnz,
        rice_parameter=rice_parameter,
        unary_bits=unary_bits,
        value_bits=value_bits,
        scale=scale,
    )
    _check_record_counts(where, record)
    return record


def _read_quantisation(reader, where, dtype):
    """Read and check a quantised array's value width and scale."""
    value_bits = reader.byte(f"{where} value bits")
    scale = float(np.frombuffer(reader.take(_SCALE_BYTES, f"{where} scale"), dtype="<f8")[0])
    if dtype.kind != "f" or value_bits not in (8, 16) or value_bits >= dtype.itemsize * 8:
        raise ValueError(
            f"corrupted payload: {where} is {dtype} quantised to {value_bits} bits, which "
            "encode never writes"
        )
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"corrupted payload: {where} has scale {scale}, not finite and > 0")
    return value_bits, scale


def _check_record_counts(where, record):
    """Raise ValueError if a record's counts cannot come from :func:`encode`."""
    size, length = math.prod(record.shape), record.coded_length
    k, nnz, unary_bits = record.rice_parameter, record.nnz, record.unary_bits
    problems = [
        (length > size, f"mask count {length} exceeds the array size {size}"),
        (nnz > length, f"non-zero count {nnz} exceeds the {length} coded entries"),
        (k > _MAX_RICE_PARAMETER, f"Rice parameter {k} exceeds {_MAX_RICE_PARAMETER}"),
        (
            record.encoding == _RICE and not nnz <= unary_bits <= nnz + (length >> k),
            f"unary bit count {unary_bits} is impossible for {nnz} gaps in {length} entries",
        ),
    ]
    for failed, message in problems:
        if failed:
            raise ValueError(f"inconsistent lengths: {where}: {message}")


def _decode_array(index, record, sections, mask):
    """Rebuild array ``index`` from its record and sections, scattering into ``mask`` if any."""
    uint = np.dtype(f"<u{record.dtype.itemsize}")
    if record.mask_count is None:
        if mask is not None:
            raise ValueError(
                f"known_masks[{index}] is given but array {index} was encoded without a mask"
            )
        return _decode_bits(index, record, sections, uint).view(record.dtype).reshape(record.shape)
    flat_mask = _check_decode_mask(index, record, mask)
    bits = np.zeros(flat_mask.size, dtype=uint)
    bits[flat_mask] = _decode_bits(index, record, sections, uint)
    return bits.view(record.dtype).reshape(record.shape)


def _check_decode_mask(index, record, mask):
    """Return ``mask`` flattened if it is the mask array ``index`` was encoded with."""
    if mask is None:
        raise ValueError(
            f"array {index} was encoded with a known mask: pass it as known_masks[{index}]"
        )
    if not isinstance(mask, np.ndarray) or mask.dtype != bool or mask.shape != record.shape:
        found = f"{mask.dtype} {mask.shape}" if isinstance(mask, np.ndarray) else type(mask)
        raise ValueError(
            f"known_masks[{index}] must be a boolean array of shape {record.shape}, got {found}"
        )
    flat_mask = mask.reshape(-1)
    count = int(np.count_nonzero(flat_mask))
    if count != record.mask_count or _mask_checksum(flat_mask) != record.mask_checksum:
        raise ValueError(
            f"known_masks[{index}] differs from the mask array {index} was encoded with "
            f"({count} vs {record.mask_count} True entries, or a different pattern)"
        )
    return flat_mask


def _decode_bits(index, record, sections, uint):
    """Return the flat bit patterns of the coded entries of one array."""
    values = _sent_values(record, sections[-1], uint)
    if record.encoding == _RAW:
        return values.copy()  # writable, and not a view of the payload
    length, nnz = record.coded_length, record.nnz
    if record.encoding == _BITMASK:
        where = np.unpackbits(np.frombuffer(sections[0], dtype=np.uint8), count=length)
        positions = np.flatnonzero(where)
    else:
        positions = _rice_positions(sections[0], sections[1], record)
    if positions.size != nnz or (nnz and not 0 <= positions[-1] < length):
        raise ValueError(f"inconsistent lengths: array {index} positions do not match its counts")
    bits = np.zeros(length, dtype=uint)
    bits[positions] = values
    return bits


def _sent_values(record, section, uint):
    """Return the sent values as the dtype's bit patterns (a quantised code as its level)."""
    if record.scale is None:
        return np.frombuffer(section, dtype=uint)
    codes = np.frombuffer(section, dtype=f"<i{record.value_itemsize}")
    levels = (codes + 0.5) * record.scale
    return levels.astype(record.dtype).view(uint)


def _rice_positions(unary, remainders, record):
    """Return the non-zero positions coded by the Golomb-Rice unary and remainder streams."""
    k, nnz = record.rice_parameter, record.nnz
    stops = np.flatnonzero(
        np.unpackbits(np.frombuffer(unary, dtype=np.uint8), count=record.unary_bits)
    )
    if stops.size != nnz:
        return stops  # the caller reports the count mismatch
    quotients = np.diff(stops, prepend=-1) - 1
    remainder_bits = np.unpackbits(np.frombuffer(remainders, dtype=np.uint8), count=nnz * k)
    weights = np.left_shift(1, np.arange(k - 1, -1, -1, dtype=np.int64))
    gaps = (quotients << k) | (remainder_bits.reshape(nnz, k) @ weights)
    return np.cumsum(gaps + 1) - 1
