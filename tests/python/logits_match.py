"""The matching rules of ../shared/models/synthetic/README.md, as a function that returns the
list of mismatches between kiln's `kiln logits` JSON and llama.cpp's reference case."""

TOLERANCES = {"f32": 0.02, "f16": 0.1, "bf16": 0.25}
QUANT_TOLERANCE = 1.0


def tolerance_for(model_name):
    dtype = model_name.rsplit(".", 2)[-2] if model_name.endswith(".gguf") else model_name
    return TOLERANCES.get(dtype, QUANT_TOLERANCE)


def mismatches(ours, ref, tol):
    errors = []
    if ours["prompt_tokens"] != ref["prompt_tokens"]:
        return [f"prompt tokens differ: {ours['prompt_tokens']} vs {ref['prompt_tokens']}"]
    for i, (p, r) in enumerate(zip(ours["positions"], ref["positions"])):
        top40 = dict((tid, logit) for tid, logit in p["top"][:40])
        for tid, logit in r["top"]:
            if tid not in top40:
                errors.append(f"position {i}: reference token {tid} not in our top 40")
            elif abs(top40[tid] - logit) > tol:
                errors.append(f"position {i}: token {tid} logit {top40[tid]:.4f} vs {logit:.4f}")
        if abs(p["logsumexp"] - r["logsumexp"]) > tol:
            errors.append(f"position {i}: logsumexp {p['logsumexp']:.4f} vs {r['logsumexp']:.4f}")
        ref_gap = r["top"][0][1] - r["top"][1][1]
        if p["top"][0][0] != r["top"][0][0] and ref_gap >= 2 * tol:
            errors.append(f"position {i}: top-1 {p['top'][0][0]} vs {r['top'][0][0]}")
    if len(ours["greedy"]) != len(ref["greedy"]):
        errors.append(f"{len(ours['greedy'])} greedy steps, the reference has {len(ref['greedy'])}")
    for step, (a, b) in enumerate(zip(ours["greedy"], ref["greedy"])):
        if ref["greedy_margins"][step] < 2 * tol:
            break
        if a != b:
            errors.append(f"greedy step {step}: {a} vs {b} (ours {ours['greedy']}, "
                          f"reference {ref['greedy']})")
            break
    return errors
