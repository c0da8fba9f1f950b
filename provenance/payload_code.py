"""The error-correcting code both tile watermarks carry: payload + CRC-16, convolutionally coded.

A 64-bit payload and its CRC-16 (CCITT) are coded with a rate-1/2, constraint-length 7 convolutional
code (generators 171, 133 octal, zero-terminated): 2 x (64 + 16 + 6) = 172 coded bits. The soft-decision
Viterbi decoder returns the payload only when the decoded CRC matches (a random input passes with
probability 2^-16).
"""

from functools import lru_cache

import numpy as np

CRC_BITS = 16
_K = 7
_GENERATORS = (0o171, 0o133)


def coded_length(payload_bits: int) -> int:
    return 2 * (payload_bits + CRC_BITS + _K - 1)


def encode_payload(payload: int, payload_bits: int) -> np.ndarray:
    """The coded bits (payload + CRC-16, convolutionally coded) that carry `payload`."""
    bits = np.unpackbits(np.frombuffer(payload.to_bytes(payload_bits // 8, "big"), np.uint8))
    return _convolve(np.concatenate([bits, crc16(bits)]))


def decode_payload(soft: np.ndarray, payload_bits: int) -> int | None:
    """The payload, if the soft bits (> 0: more likely 0) decode to one whose CRC-16 matches."""
    info = _viterbi(soft)
    payload, crc = info[:payload_bits], info[payload_bits:]
    if not np.array_equal(crc16(payload), crc):
        return None
    return int.from_bytes(np.packbits(payload).tobytes(), "big")


def crc16(bits: np.ndarray) -> np.ndarray:
    register = 0xFFFF
    for bit in bits:
        top = ((register >> 15) & 1) ^ int(bit)
        register = (register << 1) & 0xFFFF
        if top:
            register ^= 0x1021
    return np.array([(register >> (15 - i)) & 1 for i in range(CRC_BITS)], dtype=np.uint8)


def _convolve(bits: np.ndarray) -> np.ndarray:
    state, out = 0, []
    for bit in np.concatenate([bits, np.zeros(_K - 1, np.uint8)]):
        state = ((state << 1) | int(bit)) & ((1 << _K) - 1)
        out.extend(bin(state & generator).count("1") & 1 for generator in _GENERATORS)
    return np.array(out, dtype=np.uint8)


@lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray]:
    states = 1 << (_K - 1)
    previous = np.zeros((states, 2), np.int64)
    outputs = np.zeros((states, 2, 2), np.float32)  # expected +-1 symbols
    for state in range(states):
        bit = state & 1
        for branch in range(2):
            before = (state >> 1) | (branch << (_K - 2))
            previous[state, branch] = before
            register = ((before << 1) | bit) & ((1 << _K) - 1)
            for j, generator in enumerate(_GENERATORS):
                outputs[state, branch, j] = 1.0 - 2.0 * (bin(register & generator).count("1") & 1)
    return previous, outputs


def _viterbi(soft: np.ndarray) -> np.ndarray:
    """Soft-decision Viterbi decoding; soft[i] > 0 means coded bit i is more likely 0."""
    previous, outputs = _trellis()
    states, steps = 1 << (_K - 1), len(soft) // 2
    metric = np.full(states, -1e18)
    metric[0] = 0.0
    choices = np.zeros((steps, states), np.int8)
    for step in range(steps):
        received = soft[2 * step : 2 * step + 2]
        candidates = metric[previous] + outputs[..., 0] * received[0] + outputs[..., 1] * received[1]
        choices[step] = np.argmax(candidates, axis=1)
        metric = candidates[np.arange(states), choices[step]]
    state, bits = 0, np.zeros(steps, np.uint8)  # the code is zero-terminated
    for step in range(steps - 1, -1, -1):
        bits[step] = state & 1
        state = previous[state, choices[step, state]]
    return bits[: steps - (_K - 1)]
