"""kiln's logits on the synthetic models match llama.cpp's reference within the tolerances
defined in ../shared/models/synthetic/README.md, for every model and prompt."""
import json

import pytest

from kiln_testing import SHARED, run_kiln
from logits_match import mismatches, tolerance_for

REFERENCES = sorted((SHARED / "models" / "synthetic" / "reference").glob("*.json"))


@pytest.mark.parametrize("ref_path", REFERENCES, ids=lambda p: p.stem)
def test_logits_match_llama_cpp(kiln_bin, shared_dir, ref_path):
    ref = json.loads(ref_path.read_text())
    model = shared_dir / "models" / "synthetic" / ref["model"]
    tol = tolerance_for(ref["model"])
    for case in ref["cases"]:
        ours = json.loads(run_kiln(kiln_bin, "logits", "--model-path", model, "--prompt",
                                   case["prompt"], "--top-k", 40, "--n-predict",
                                   len(case["greedy"]), "--threads", 2))
        errors = mismatches(ours, case, tol)
        assert not errors, f"{ref_path.stem} / {case['prompt'][:30]!r}:\n" + "\n".join(errors[:10])


def test_reference_set_is_complete():
    assert len(REFERENCES) >= 12, "the synthetic reference files are missing"
