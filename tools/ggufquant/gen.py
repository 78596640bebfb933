"""Test vectors for model/gguf's dequantization, made by the gguf Python
package (llama.cpp's gguf-py, PyPI gguf 0.19.0): random quantized blocks and
what gguf.quants.dequantize makes of them.

    pip install gguf==0.19.0 numpy
    python gen.py ../../model/gguf/testdata/dequant.json

Q8_K is left out: it only exists inside llama.cpp (never in a file), and
gguf-py does not dequantize it. Blocks are random bytes, except that each
block's scale fields (f16 d and dmin) are set to random values in ±[0.001, 0.1]: random bits
there would be NaN or huge half the time, which tests nothing useful.
Bytes and values are base64 of the raw little-endian data (values as f32).
"""
import base64
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

rng = np.random.default_rng(18)

# Byte offsets of the f16 scale fields within one block.
SCALES = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}

out = {}
for t in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
          T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
    block, size = GGML_QUANT_SIZES[t]
    nblocks = max(2, 128 // block) if block > 1 else 64
    if t == T.F32:
        raw = rng.standard_normal(nblocks).astype("<f4").tobytes()
    elif t == T.F16:
        raw = rng.standard_normal(nblocks).astype("<f2").tobytes()
    elif t == T.BF16:
        raw = (rng.standard_normal(nblocks).astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    else:
        b = bytearray(rng.integers(0, 256, nblocks * size, dtype=np.uint8).tobytes())
        for i in range(nblocks):
            for off in SCALES[t]:
                v = np.array([rng.uniform(0.001, 0.1) * rng.choice([-1, 1])], dtype="<f2")
                b[i * size + off:i * size + off + 2] = v.tobytes()
        raw = bytes(b)
    vals = dequantize(np.frombuffer(raw, dtype=np.uint8), t).astype("<f4").reshape(-1)
    assert vals.size == nblocks * block, (t.name, vals.size)
    out[t.name] = {"type": int(t), "n": int(vals.size),
                   "bytes": base64.b64encode(raw).decode(),
                   "values": base64.b64encode(vals.tobytes()).decode()}

with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
