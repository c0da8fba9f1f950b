"""tile-v2: a self-synchronising tile watermark that survives mirroring, rotation, non-uniform scaling and crops.

Embedding (embed.py): a 32x32 grid of +-1 chips forms one tile, repeated with a period of a quarter of the
image's long side (8x8 px chips at 1024 px). Each chip carries a public sync pattern plus one chip of the
coded payload (payload_code.py: 64 bits + CRC-16, rate-1/2 K=7 convolutional code, 172 bits spread over
about 6 chips each). The grid is upsampled smoothly and added to the luminance, more in textured areas
than in flat ones, at an RMS change of 2.4 grey levels (PSNR about 40.4 dB) from 768 px up.

Reading (lattice.py, read.py) needs neither scale, orientation nor crop offset: the autocorrelation of
the whitened residual is a lattice of peaks whose basis is the linear map the copy went through (up to
the square's eight symmetries); the copy is resampled so that the lattice becomes square again and all
its tiles are folded into one; the sync pattern, correlated under each of the eight symmetries and every
cyclic shift, settles the orientation and offset (its z-score is the confidence); a soft Viterbi decoder
and the CRC give the payload. A payload is reported only when z >= Z_THRESHOLD and the CRC matches. At
most MAX_BASES + 1 lattice hypotheses are decoded per image: the false-match arithmetic counts each one
(docs/SOFT_BINDINGS.md).

The pattern key is public (this is open source): anyone can detect the mark, and with effort remove it.
It marks disclosures so they can be recovered, it is not a secret.
"""

from provenance.tile_v2.embed import embed
from provenance.tile_v2.pattern import ALGORITHM, PAYLOAD_BITS, codeword
from provenance.tile_v2.read import MAX_BASES, ORIENTATIONS, Z_THRESHOLD, read

MIN_SIDE = 128  # below this a chip is under 1 px: the image is not watermarked

__all__ = [
    "ALGORITHM",
    "MAX_BASES",
    "MIN_SIDE",
    "ORIENTATIONS",
    "PAYLOAD_BITS",
    "Z_THRESHOLD",
    "codeword",
    "embed",
    "read",
]
