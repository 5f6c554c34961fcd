"""The host time of an eager Hugging Face training step, per launched op, for each layer kind, mode and
recomputation, relative to the row that fits ``host_s_per_op`` (GPT-2, autocast, no recomputation).

Usage (from the repository root, with torch and transformers installed)::

    python benchmarks/host_probe.py              # print the weights, write benchmarks/host_probe.yaml
    python benchmarks/host_probe.py --no-write

Why: the hf stack's host time is ``host_s_per_op`` per launched op, fitted on one host-bound row
(GPT-2 at batch 8, catalogs/stack_runs.yaml). A launched op is not the only thing the host pays for:
Python module calls, views (which launch nothing), autocast's cache, ``torch.utils.checkpoint``'s hooks
on every tensor a checkpointed layer saves and its recomputation all cost host time, and they differ
between families (GPT-2's Conv1D and head splitting against Llama's fused-bias-free linears) and
modes. The probe measures that host time where it can be measured without a GPU.

How: each family's model (``AutoModelForCausalLM`` / ``AutoModelForMaskedLM``, SDPA, dropout 0) with
widths so small (hidden 64, 16 tokens) that every op's CPU kernel is a few microseconds, so the step's
wall time is the host's work: Python, dispatch, autograd, autocast (CPU's own, a dispatch key as
CUDA's), the checkpoint's hooks, fused AdamW. The steps of models with 1, 4, 7 and 10 layers,
interleaved over rounds, each round a fresh model (medians, garbage collection off; the machine is
shared), fitted by a line, give
the host time per layer and outside the layers;
each is divided by the ops the hf stack's tables say that part launches on a GPU (kernels_per_layer,
kernels_outside in catalogs/stacks.yaml), and the result is taken relative to GPT-2's (autocast, no
recomputation, 12 layers: the fitted row). The ratio is what transfers from this CPU to another host;
the absolute microseconds do not. On a GPU each launching op also pays the CUDA launch (a few
microseconds) where a CPU runs its tiny kernel (about as long), so the ratios carry over.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout: import estimator from it
OUTPUT = ROOT / "benchmarks" / "host_probe.yaml"

from estimator.catalog.stacks import MODES, RECOMPUTES, load_stacks  # noqa: E402

#: the family probed for each layer kind of the hf tables, and Qwen2, which runs the Llama kind, as a check
PROBED = (("llama", "gated_rmsnorm"), ("gpt2", "gelu_tanh_layernorm"), ("bert", "gelu_layernorm"))
CHECKS = (("qwen2", "gated_rmsnorm"),)
HIDDEN, TOKENS, VOCAB, LAYERS = 64, 16, 512, (1, 4, 7, 10)
FIT_ROW = ("gpt2", "gelu_tanh_layernorm", "amp", "none", 12)  # GPT-2 small, the host-bound training row


def config(family: str, layers: int):
    import transformers

    h, heads = HIDDEN, 4
    if family == "gpt2":
        return transformers.GPT2Config(n_embd=h, n_layer=layers, n_head=heads, vocab_size=VOCAB, n_positions=64,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    if family == "bert":
        return transformers.BertConfig(hidden_size=h, intermediate_size=4 * h, num_hidden_layers=layers,
                                       num_attention_heads=heads, vocab_size=VOCAB, hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0)
    cls = transformers.LlamaConfig if family == "llama" else transformers.Qwen2Config
    return cls(hidden_size=h, intermediate_size=3 * h, num_hidden_layers=layers, num_attention_heads=heads,
               num_key_value_heads=2, vocab_size=VOCAB, tie_word_embeddings=True)


def make_step(family: str, layers: int, mode: str, recompute: str):
    """One training step as ../shared/measurements/h200-2026-12/hf_variants.py runs it, on the CPU."""
    import torch
    import transformers

    torch.manual_seed(0)
    auto = transformers.AutoModelForMaskedLM if family == "bert" else transformers.AutoModelForCausalLM
    model = auto.from_config(config(family, layers), attn_implementation="sdpa")
    pure = mode == "bf16"
    model = model.to(torch.bfloat16 if pure else torch.float32)
    model.train()
    if recompute == "full":
        model.gradient_checkpointing_enable()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randint(0, VOCAB, (1, TOKENS))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not pure):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    return step


def timed(step, repeats: int) -> float:
    times = []
    gc.collect()
    gc.disable()  # a collection inside one step is not the step's host work
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    finally:
        gc.enable()
    return statistics.median(times)


def kernels(stack, kind: str, mode: str, recompute: str) -> tuple[float, float]:
    """(ops per layer, ops outside the layers) the hf tables launch on a GPU, dropout 0 as probed."""
    layer = stack.kernels_per_layer[kind][mode]
    outside = stack.kernels_outside[kind][mode]
    return (layer["forward"] * (2 if recompute == "full" else 1) + layer["backward"],
            outside["forward"] + outside["backward"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    import torch
    import transformers
    import yaml

    torch.set_num_threads(1)
    stack = next(s for s in load_stacks(ROOT / "catalogs") if s.id == "hf")
    cases = [(family, kind, mode, recompute) for family, kind in (*PROBED, *CHECKS)
             for mode in MODES for recompute in RECOMPUTES]
    keys = [(c, n) for c in cases for n in LAYERS]
    samples: dict = {key: [] for key in keys}
    for _ in range(args.rounds):  # interleaved, so that a noisy minute falls on every case alike; a
        for key in keys:  # fresh model each round, so that no one instance's memory layout sets a case
            case, layers = key
            samples[key].append(timed(make_step(case[0], layers, case[2], case[3]), args.repeats))
    seconds = {key: statistics.median(v) for key, v in samples.items()}
    parts = {}
    for case in cases:  # least squares: step seconds = layers x per layer + outside
        per_layer, outside = statistics.linear_regression(LAYERS, [seconds[(case, n)] for n in LAYERS])
        parts[case] = (per_layer, outside)
    *ref_case, fit_layers = FIT_ROW
    k_layer, k_out = kernels(stack, *ref_case[1:])
    layer_s, out_s = parts[tuple(ref_case)]
    ref = (fit_layers * layer_s + out_s) / (fit_layers * k_layer + k_out)  # host s per op of the fitted row
    arguments = argv if argv is not None else sys.argv[1:]
    layers = ", ".join(map(str, LAYERS))
    report: dict = {"command": "python benchmarks/host_probe.py " + " ".join(arguments),
                    "torch": str(torch.__version__), "transformers": str(transformers.__version__),
                    "setting": f"hidden {HIDDEN}, {TOKENS} tokens, vocab {VOCAB}, {layers} layers (a line fitted), "
                               f"one thread, {args.rounds} interleaved rounds of {args.repeats} steps (medians)",
                    "reference_us_per_op": round(ref * 1e6, 2),
                    "units": "weight: host seconds per launched op of that part / the fitted row's (GPT-2 amp, "
                             "no recompute, 12 layers); us: host microseconds on the probing CPU",
                    "weights": {}}
    print(f"reference (GPT-2 amp, 12 layers): {ref * 1e6:.2f} us per op on this CPU")
    for family, kind, mode, recompute in cases:
        layer_s, out_s = parts[(family, kind, mode, recompute)]
        k_layer, k_out = kernels(stack, kind, mode, recompute)
        row = {"layer": round(layer_s / k_layer / ref, 3), "outside": round(max(out_s, 0.0) / k_out / ref, 3),
               "us_per_layer": round(layer_s * 1e6, 1), "us_outside": round(out_s * 1e6, 1)}
        name = kind if (family, kind) in PROBED else f"{kind} ({family}, check)"
        report["weights"].setdefault(name, {}).setdefault(mode, {})[recompute] = row
        print(f"{family:6s} {kind:20s} {mode:4s} recompute {recompute:4s}: per layer {layer_s * 1e6:7.1f} us "
              f"({k_layer:.0f} ops, weight {row['layer']:.2f}), outside {out_s * 1e6:7.1f} us "
              f"({k_out:.0f} ops, weight {row['outside']:.2f})")
    if not args.no_write:
        OUTPUT.write_text(yaml.safe_dump(report, sort_keys=False, width=120))
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
