"""A shard's own weight block (``init_block``) equals the slice of the in-process init, bit for bit."""
import numpy as np
import pytest

from distspike.config import ModelConfig, NetConfig
from distspike.core import network
from distspike.core.modules import Numerics
from distspike.core.network import init_block, init_weights


@pytest.mark.parametrize("dtype", ["float64", "float32", "int"])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 23])
def test_block_is_the_slice_of_the_full_init(dtype, chunk, monkeypatch):
    monkeypatch.setattr(network, "INIT_CHUNK", chunk)  # 1 normal per chunk: one row per draw
    sizes, num = (13, 11, 9, 4), Numerics.of(NetConfig(ModelConfig((13, 11, 9, 4), 0.3, dtype)))
    full = [num.encode(w) for w in init_weights(sizes, 0.3, 5)]
    for layer, r0, r1, c0, c1 in [(1, 0, 13, 0, 11), (2, 3, 7, 0, 9), (2, 0, 11, 4, 9), (3, 8, 9, 1, 3)]:
        got = init_block(sizes, 0.3, 5, layer, (r0, r1), (c0, c1), num.encode, num.dtype)
        want = full[layer - 1][r0:r1, c0:c1]
        assert got.dtype == want.dtype and got.tobytes() == np.ascontiguousarray(want).tobytes()
        got_t = init_block(sizes, 0.3, 5, layer, (r0, r1), (c0, c1), num.encode, num.dtype, transposed=True)
        assert got_t.flags.c_contiguous and got_t.tobytes() == np.ascontiguousarray(want.T).tobytes()


def test_a_layer_past_the_last_is_refused():
    with pytest.raises(ValueError, match="layer 4 is not a layer"):
        init_block((3, 2, 2), 0.1, 1, 4, (0, 1), (0, 1), np.asarray, np.float64)
