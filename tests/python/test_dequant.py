"""kiln's scalar dequantization of every tensor equals, bit for bit, the `gguf` Python package's, on the
synthetic models (F32 F16 BF16 Q2_K..Q6_K Q4_0 Q8_0) and the real ones (Q4_1, Q5_0, Q8_0,
Q4_K, Q6_K as they ship). The SIMD dot products are checked against this scalar code by
build/test_kernels."""
import subprocess

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

from kiln_testing import SHARED, fetch_model

SYNTHETIC = sorted(p.name for p in (SHARED / "models" / "synthetic").glob("*.gguf"))
REAL = ["smollm2-135m-instruct", "gemma3-270m"]


def compare_file(path, build_tool, tmp_path):
    reader = GGUFReader(path)
    out = tmp_path / "dump.f32"
    subprocess.run([str(build_tool("dump_tensor")), str(path), str(out)], check=True)
    ours = np.fromfile(out, dtype=np.float32)
    offset, types = 0, set()
    for t in reader.tensors:
        theirs = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        mine = ours[offset:offset + theirs.size]
        offset += theirs.size
        types.add(t.tensor_type.name)
        # Same formulas in float32, same order of operations: equal to the bit.
        bad = mine.view(np.uint32) != theirs.view(np.uint32)
        assert not bad.any(), (f"{path}: {t.name} ({t.tensor_type.name}): "
                               f"{int(bad.sum())} of {theirs.size} values differ, first at "
                               f"{int(np.argmax(bad))}: {mine[bad][0]} vs {theirs[bad][0]}")
    assert offset == ours.size, "dump_tensor wrote more values than the file has"
    return types


def test_synthetic_models_are_there():
    assert len(SYNTHETIC) >= 12, "the synthetic models are missing: nothing would be compared"


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_dequant_matches_gguf(name, build_tool, tmp_path):
    compare_file(SHARED / "models" / "synthetic" / name, build_tool, tmp_path)


@pytest.mark.parametrize("name", REAL)
def test_real_model_dequant_matches_gguf(name, build_tool, tmp_path):
    types = compare_file(fetch_model(name), build_tool, tmp_path)
    assert len(types) >= 2, types  # the models mix types; make sure we saw them
