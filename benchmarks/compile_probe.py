"""What Hugging Face transformers models keep for backward and launch per training step under
``torch.compile`` (Inductor), counted on the CPU with small configs and fitted per token per layer,
as benchmarks/stack_probe.py does for the eager modules.

Usage (from the repository root, with torch and transformers installed; each family takes minutes,
because every config is compiled, forward and backward)::

    python benchmarks/compile_probe.py                         # write benchmarks/compile_probe.yaml
    python benchmarks/compile_probe.py --families gpt2 --no-write --verbose

For each family (Llama, Qwen2, GPT-2, BERT) and mode (``amp``: fp32 weights under CUDA's autocast
rules, ``purebf16``: the model in bf16) it builds the model of stack_probe.py with 1 and 2 layers,
wraps it in ``torch.compile(model)`` (as ../shared/measurements/h200-2026-12/hf_variants.py did), runs
a first training step (dynamo traces, AOTAutograd partitions forward and backward, Inductor compiles
both) and then a second, measured step:

(a) **Saved for backward**: ``saved_tensors_hooks`` around the measured step see what the compiled
    function saves (AOTAutograd's ``CompiledFunction`` saves the partitioner's chosen tensors with
    ``ctx.save_for_backward``). Which tensors the min-cut partitioner keeps is decided on the joint
    graph before any device code is generated, so it is the same on a GPU.
(b) **Kernels and bytes**: while Inductor compiles, every scheduler node of the forward and backward
    graphs is recorded (``GraphLowering.count_bytes``, what ``torch._inductor.metrics`` logs as
    ``num_bytes_accessed``): extern kernels (matmuls, SDPA: cuBLAS / FlashAttention on a GPU, aten
    on the CPU, one launch each on both) and fused kernels (the generated C++ here, Triton on CUDA),
    with the bytes each reads and writes. The compiled graph runs each kernel once per call.
(c) **Autocast**: CUDA's autocast rules are applied by stack_probe.py's ``CudaAutocast`` torch-function
    mode, which dynamo traces into the graph (no graph break: checked, ``graphs`` below), so the traced
    graph has a GPU's dtypes.

Where the CPU backend fuses differently from Triton, the GPU count is the one written:

* the C++ backend's *outer-loop fusion* (``OuterLoopFusedSchedulerNode``, torch/_inductor/codegen/cpp.py)
  merges kernels that share only their outer loops (a norm's reduction and the pointwise work after
  it); the Triton scheduler has no such fusion, so each of its inner kernels is counted as a launch
  and their bytes as read and written by each (``cpu_outer_loop_merges`` records how many were merged);
* Triton splits a long reduction into two kernels when one would leave the GPU's SMs idle
  (torch/_inductor/config.py ``split_reductions``; ir.py ``Reduction.num_splits``): the weight
  gradients of norms and biases (sums over every token) are such reductions; the CPU backend runs
  them as one. This is not corrected (a few kernels of tens per layer; ``reductions_over_tokens``
  records how many per layer could split).

Dropout is 0 (the eager probe's reason); the AdamW step runs outside the compiled model, eagerly, as
on the GPU (the eager probe's ``kernels.optimizer``). Results are per token (micro_batch x seq), fitted
by least squares with a per-parameter term for what scales with the weights (autocast's bf16 weight
copies, the gradient casts), and the worst residual is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack_probe  # noqa: E402  (the eager probe: families, model building, CUDA autocast rules)

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "benchmarks" / "compile_probe.yaml"

# (hidden, ffn, heads, kv heads, seq, batch, vocab): varied one at a time around the first. 96 tokens
# so that no flattened activation has a weight's shape (weight copies are told apart by shape)
GRID = [(128, 384, 4, 2, 48, 2, 512), (256, 384, 4, 2, 48, 2, 512), (128, 768, 4, 2, 48, 2, 512),
        (128, 384, 4, 4, 48, 2, 512), (128, 384, 4, 2, 48, 4, 512), (128, 384, 4, 2, 48, 2, 1024)]
# GPT-2 and BERT have as many KV heads as heads; two more points tell their position tables (4096 x h
# parameters, whose gradients and casts do not scale with the tokens) from the per-token terms
NO_KV_GRID = [p for p in GRID if p[3] == 2] + [(192, 384, 4, 2, 48, 2, 512), (128, 384, 4, 2, 48, 3, 512)]
POSITIONS = 4096  # stack_probe.FAMILIES' max_position_embeddings / n_positions

_NODES: list[dict] = []  # scheduler nodes of the graphs compiled since the last reset


def _record_nodes():
    """Patch GraphLowering.count_bytes (called when Inductor's metrics log is on) to keep, for every
    scheduler node, its class, bytes read + written, the logits-sized buffers it writes, and the
    kernels it would be on a GPU."""
    import torch
    import torch._inductor.compile_fx  # noqa: F401  (creates the metrics artifact logger silenced below)
    from torch._inductor import graph as graph_mod
    from torch._inductor.scheduler import ExternKernelSchedulerNode, NopKernelSchedulerNode

    original = graph_mod.GraphLowering.count_bytes

    def count_bytes(self):
        result = original(self)
        for node in self.scheduler.nodes:
            if isinstance(node, NopKernelSchedulerNode):
                continue
            nbytes = node.get_read_write_buffers_sizes()
            outs = []
            for buf in node.get_outputs():
                if buf.get_name() in self.removed_buffers or buf.get_name() in self.inplaced_to_remove:
                    continue  # a fused kernel's intermediate, never allocated
                try:
                    layout = buf.node.get_layout()
                    shape = tuple(int(d) for d in layout.size)
                    itemsize = layout.dtype.itemsize
                except (NotImplementedError, AttributeError, TypeError):  # multi-output or symbolic: not logits
                    shape, itemsize = (), 0
                outs.append((shape, itemsize))
            if isinstance(node, ExternKernelSchedulerNode):
                name = str(getattr(node.node, "python_kernel_name", "") or type(node.node).__name__)
                _NODES.append({"kind": "extern", "name": name, "bytes": nbytes, "kernels": 1 if nbytes else 0,
                               "outs": outs, "merged": 0})
                continue
            inner = list(node.get_outer_nodes()) if type(node).__name__ == "OuterLoopFusedSchedulerNode" else [node]
            gpu_bytes = sum(n.get_read_write_buffers_sizes() for n in inner) if len(inner) > 1 else nbytes
            reductions = sum(1 for n in node.get_nodes() if getattr(n, "is_reduction", lambda: False)())
            _NODES.append({"kind": "fused", "name": node.get_name(), "bytes": gpu_bytes, "kernels": len(inner),
                           "outs": outs, "merged": len(inner) - 1, "reductions": reductions})
        for name, value in self.graph_inputs.items():  # the gradients autograd passes to a backward graph
            if name.startswith("tangents"):
                try:
                    shape, itemsize = tuple(int(d) for d in value.get_size()), value.get_dtype().itemsize
                except (NotImplementedError, AttributeError, TypeError):
                    continue
                _NODES.append({"kind": "tangent", "name": name, "bytes": 0, "kernels": 0, "outs": [(shape, itemsize)],
                               "merged": 0})
        return result

    graph_mod.GraphLowering.count_bytes = count_bytes
    # a graph found in Inductor's or AOTAutograd's on-disk caches is not lowered again: nothing to count
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    # count_bytes runs only when the inductor_metrics artifact log is on; keep it on but silent
    torch._logging.set_logs(inductor_metrics=True)
    for name in logging.root.manager.loggerDict:
        if name.endswith("__inductor_metrics"):
            log = logging.getLogger(name)
            log.handlers.clear()
            log.propagate = False
            log.addHandler(logging.NullHandler())


def _summarise(nodes: list[dict], phase: str, logits_numel: int, vocab: int) -> dict[str, float]:
    """Kernels and bytes by kind, and the bytes of the logits-sized buffers (tokens x vocab, the
    vocabulary last) the graph writes."""
    out = {f"kernels.{phase}.extern": 0.0, f"kernels.{phase}.fused": 0.0, f"bytes.{phase}.extern": 0.0,
           f"bytes.{phase}.fused": 0.0, f"cpu_outer_loop_merges.{phase}": 0.0, f"logits_buffers.{phase}": 0.0}
    for node in nodes:
        logits = "logits_tangents" if node["kind"] == "tangent" else "logits_buffers"
        if node["kind"] == "tangent":  # every output's gradient, the logits' and the KV cache's among them
            out[f"tangents.{phase}"] = out.get(f"tangents.{phase}", 0.0) + sum(
                math.prod(shape) * size for shape, size in node["outs"])
        else:
            out[f"kernels.{phase}.{node['kind']}"] += node["kernels"]
            out[f"bytes.{phase}.{node['kind']}"] += node["bytes"]
            out[f"cpu_outer_loop_merges.{phase}"] += node["merged"]
        out[f"{logits}.{phase}"] = out.get(f"{logits}.{phase}", 0.0) + sum(math.prod(shape) * size for shape, size in node["outs"]
                                              if shape and shape[-1] == vocab and math.prod(shape) == logits_numel)
    return out


def probe_step(family: str, hidden: int, ffn: int, heads: int, kv_heads: int, seq: int, batch: int, vocab: int,
               layers: int, mode: str) -> dict[str, float]:
    """One compiled training step's saved bytes (by kind) and the compiled graphs' kernels and bytes."""
    import torch
    import torch._dynamo

    CudaAutocast, OpCounter = stack_probe.make_modes()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model = stack_probe.build(family, hidden, ffn, heads, kv_heads, layers, mode, vocab)
    compiled = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randint(0, vocab, (batch, seq))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    # a weight's bf16 copy may be saved transposed (GPT-2's Conv1D weights are (in, out))
    param_shapes = {s for p in model.parameters() if p.dim() == 2 for s in (tuple(p.shape), tuple(p.shape)[::-1])}
    amp = CudaAutocast() if mode == "amp" else contextlib.nullcontext()
    result: dict[str, float] = {"params": float(sum(p.numel() for p in model.parameters()))}
    logits_numel = batch * seq * vocab

    _NODES.clear()
    with amp:
        loss = compiled(input_ids=x, labels=x).loss
    result.update(_summarise(_NODES, "forward", logits_numel, vocab))
    _NODES.clear()
    loss.backward()
    result.update(_summarise(_NODES, "backward", logits_numel, vocab))
    _NODES.clear()
    opt.step()
    opt.zero_grad(set_to_none=True)
    result["graphs"] = float(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    result["graph_breaks"] = float(sum(torch._dynamo.utils.counters["graph_break"].values()))

    saved: dict[int, tuple[str, float]] = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            ptr = t.untyped_storage().data_ptr()
            kind = ("parameter" if ptr in params else
                    "weight_copy" if mode == "amp" and t.dtype == torch.bfloat16 and tuple(t.shape) in param_shapes
                    else str(t.dtype).replace("torch.", ""))
            saved.setdefault(ptr, (kind, float(t.untyped_storage().nbytes())))
        return t

    counter = OpCounter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), amp:
        out = compiled(input_ids=x, labels=x)
        result["logits_bytes"] = float(out.logits.untyped_storage().nbytes())
        out.loss.backward()
    with counter:  # the eager optimizer step beside the compiled model
        counter.phase = "optimizer"
        opt.step()
        opt.zero_grad(set_to_none=True)
    if _NODES:
        raise RuntimeError(f"the measured step recompiled ({len(_NODES)} scheduler nodes): guards failed")
    for kind, nbytes in saved.values():
        result[f"saved.{kind}"] = result.get(f"saved.{kind}", 0.0) + nbytes
    for (phase, cls), n in counter.kernels.items():
        result[f"kernels.{phase}.{cls}"] = n
    return result


def per_layer(family: str, point: tuple[int, ...], mode: str) -> tuple[dict[str, float], dict[str, float]]:
    """(one layer, the rest) for a grid point: the 2-layer step minus the 1-layer step."""
    one = probe_step(family, *point, 1, mode)
    two = probe_step(family, *point, 2, mode)
    keys = set(one) | set(two)
    layer = {k: two.get(k, 0.0) - one.get(k, 0.0) for k in keys}
    rest = {k: one.get(k, 0.0) - layer[k] for k in keys}
    for key in ("graphs", "graph_breaks"):
        layer[key], rest[key] = two.get(key, 0.0), one.get(key, 0.0)
    return layer, rest


PER_PARAM = ("saved.parameter", "saved.weight_copy")
#: the probed family whose fit is catalogs/stacks.yaml's layer kind (qwen2 is a check on llama's kind),
#: and the catalog's mode names
KINDS = {"llama": "gated_rmsnorm", "gpt2": "gelu_tanh_layernorm", "bert": "gelu_layernorm"}
MODES = {"amp": "amp", "purebf16": "bf16"}
SAVED = ("saved.bfloat16", "saved.float32", "saved.int64")


def _coef(fits: dict, keys: tuple[str, ...], width: str) -> float:
    return sum(fits.get(key, {}).get(width, 0.0) for key in keys)


def _row(fits: dict, keys: tuple[str, ...], widths: tuple[str, ...]) -> dict[str, float]:
    """{width: coefficient} summed over keys, rounded to 0.1 B; terms under 0.05 B dropped (fit noise),
    ``{hidden: 0}`` when nothing is left."""
    row = {w: round(_coef(fits, keys, w), 1) for w in widths}
    return {w: v for w, v in row.items() if v >= 0.05} or {"hidden": 0.0}


def catalog_tables(families: dict) -> dict[str, dict]:
    """catalogs/stacks.yaml's ``compiled_*`` tables from the probe's fits (``families`` of
    benchmarks/compile_probe.yaml): what tests/test_stacks.py checks the catalog against.

    * saved per layer: bf16 + fp32 (+ int64) per token (autocast's weight copies apart, per parameter);
      outside: per token (one, hidden); per logit: ``compiled_logits.saved``;
    * logits peak (bytes per logit live at the loss backward): the saved logits, the logits gradient
      the backward graph allocates and the gradient autograd passes in for the logits output;
    * output gradients per layer: what autograd passes in for the layers' other outputs of the compiled
      model (the KV cache the model returns), zeros allocated when the backward starts;
    * traffic: the fused kernels' bytes (matmuls and attention are timed apart), per token per layer,
      per weight of a layer (the params_per_token coefficient: the bf16 casts) and of the embedding
      table, which is the tied head (vocab_params_per_token: its cast and its gradient's scatter),
      and outside per token and logit; a negative fit of a term that is not there is written 0;
    * kernels: extern + fused launches per layer, and outside forward and backward (the eager AdamW
      step's kernels with the backward's).
    """
    tables: dict[str, dict] = {name: {} for name in (
        "compiled_saved_bytes_per_token_per_layer", "compiled_saved_bytes_per_token_outside",
        "compiled_traffic_bytes_per_token_per_layer", "compiled_weight_traffic_bytes_per_param",
        "compiled_traffic_bytes_per_token_outside", "compiled_kernels_per_layer", "compiled_kernels_outside",
        "compiled_logits", "compiled_output_grad_bytes_per_token_per_layer")}
    for family, kind in KINDS.items():
        for probed, mode in MODES.items():
            entry = families[family][probed]
            layer, rest = entry["layer"], entry["outside_layers"]
            widths = ("hidden", "ffn", "kv_dim") if family == "llama" else ("hidden", "ffn")
            put = {name: table.setdefault(kind, {}) for name, table in tables.items()}
            put["compiled_saved_bytes_per_token_per_layer"][mode] = _row(layer, SAVED, widths)
            put["compiled_saved_bytes_per_token_outside"][mode] = _row(rest, SAVED, ("one", "hidden"))
            put["compiled_traffic_bytes_per_token_per_layer"][mode] = {
                phase: _row(layer, (f"bytes.{phase}.fused",), widths) for phase in ("forward", "backward")}
            put["compiled_weight_traffic_bytes_per_param"][mode] = {
                **{phase: max(0.0, round(_coef(layer, (f"bytes.{phase}.fused",), "params_per_token"), 1))
                   for phase in ("forward", "backward")},
                **{f"embedding_{phase}": max(0.0, round(_coef(rest, (f"bytes.{phase}.fused",), "vocab_params_per_token"), 1))
                   for phase in ("forward", "backward")}}
            put["compiled_traffic_bytes_per_token_outside"][mode] = {
                phase: _row(rest, (f"bytes.{phase}.fused",), ("one", "hidden", "vocab")) for phase in ("forward", "backward")}
            put["compiled_kernels_per_layer"][mode] = {
                phase: round(_coef(layer, (f"kernels.{phase}.extern", f"kernels.{phase}.fused"), "one"))
                for phase in ("forward", "backward")}
            optimizer = tuple(k for k in rest if k.startswith("kernels.optimizer."))
            put["compiled_kernels_outside"][mode] = {
                "forward": round(_coef(rest, ("kernels.forward.extern", "kernels.forward.fused"), "one")),
                "backward": round(_coef(rest, ("kernels.backward.extern", "kernels.backward.fused", *optimizer), "one"))}
            saved = round(_coef(rest, SAVED, "vocab"), 1)
            peak = saved + _coef(rest, ("logits_buffers.backward", "logits_tangents.backward"), "vocab")
            put["compiled_logits"][mode] = {"saved": saved, "peak": round(peak, 1)}
            put["compiled_output_grad_bytes_per_token_per_layer"][mode] = _row(layer, ("tangents.backward",), widths)
    return tables


def _outside_features(family: str, point: tuple[int, ...], tokens: int) -> dict[str, float]:
    """Per-token features of what lies outside the layers: per token, hidden, per logit, and the tables
    whose gradients and casts scale with their size (the embedding and tied head, V x h; GPT-2's and
    BERT's position tables, max_position_embeddings x h; BERT's head transform, h x h)."""
    hidden, vocab = point[0], point[6]
    return {"one": 1.0, "hidden": hidden, "vocab": vocab, "vocab_params_per_token": vocab * hidden / tokens,
            "position_params_per_token": POSITIONS * hidden / tokens if family in ("gpt2", "bert") else 0.0,
            "square_params_per_token": hidden * hidden / tokens if family == "bert" else 0.0}


def _outside_basis(family: str) -> tuple[str, ...]:
    basis = ("one", "hidden", "vocab", "vocab_params_per_token")
    if family in ("gpt2", "bert"):
        basis += ("position_params_per_token",)
    return basis + (("square_params_per_token",) if family == "bert" else ())


def fit_entry(family: str, points: list[dict]) -> dict:
    """The fits of one family and mode from its grid points' raw totals (see the module docstring)."""
    gated = family not in ("gpt2", "bert")
    entry: dict = {"layer": {}, "outside_layers": {}}
    for part in ("layer", "outside_layers"):
        for key in sorted({k for p in points for k in p[part]} - {"params"}):
            counted = key.startswith(("kernels.", "cpu_outer_loop_merges."))
            rows = []
            for p in points:
                point, tokens, row = tuple(p["point"]), p["tokens"], p[part]
                f = {**stack_probe.features(family, point), "params_per_token": row["params"] / tokens,
                     **_outside_features(family, point, tokens)}
                value = row.get(key, 0.0) if counted else row.get(key, 0.0) / tokens
                if key.startswith(PER_PARAM):
                    value = row.get(key, 0.0) / max(row["params"], 1.0)
                rows.append((f, value))
            if all(abs(v) < (1e-9 if counted else 0.5) for _, v in rows):
                continue
            if counted or key.startswith(PER_PARAM):
                basis: tuple[str, ...] = ("one",)
            elif part == "layer":
                basis = ("hidden", "ffn", "kv_dim", "params_per_token") if gated else ("hidden", "ffn", "params_per_token")
            else:
                basis = _outside_basis(family)
            coef, worst = stack_probe.fit(rows, basis)
            entry[part][key + (".per_param" if key.startswith(PER_PARAM) else "")] = {
                **{k: v for k, v in coef.items() if abs(v) > 1e-6}, "worst_residual": worst}
    return entry


UNITS = ("bytes per token (micro_batch x seq) per transformer layer, as coefficients of hidden, ffn, kv_dim and "
         "params_per_token (the layer's parameters / tokens: what scales with the weights); kernels per layer; "
         "*.per_param: bytes per parameter; outside_layers: the embedding, final norm, head and loss per token, as "
         "coefficients of one (per token), hidden, vocab (per logit) and the per-token sizes of the tables outside "
         "the layers (vocab_params_per_token: V x h / tokens; position_params_per_token: 4096 x h / tokens, GPT-2 "
         "and BERT; square_params_per_token: h x h / tokens, BERT's head transform); points: each grid point's raw "
         "totals (layer: the 2-layer step minus the 1-layer step; outside_layers: the 1-layer step minus that)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="llama,gpt2,bert,qwen2")
    parser.add_argument("--modes", default="amp,purebf16")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the YAML to write (its other families are kept)")
    parser.add_argument("--catalog", action="store_true",
                        help="print catalogs/stacks.yaml's compiled_* tables from the written YAML and stop")
    parser.add_argument("--refit", nargs="*", type=Path, metavar="YAML",
                        help="re-fit the points stored in these probe YAMLs (no compiling) into --output")
    args = parser.parse_args(argv)
    output = args.output
    import yaml

    if args.catalog:
        tables = catalog_tables(yaml.safe_load(output.read_text())["families"])
        print(yaml.safe_dump(tables, sort_keys=False, default_flow_style=None, width=120))
        return 0
    if args.refit is not None:
        report, commands = None, []
        for source in args.refit or [output]:
            probed = yaml.safe_load(source.read_text())
            commands += probed["command"] if isinstance(probed["command"], list) else [probed["command"]]
            if report is None:
                report = {**probed, "families": {}}
            for family, modes in probed["families"].items():
                for mode, entry in modes.items():
                    report["families"].setdefault(family, {})[mode] = {
                        **fit_entry(family, entry["points"]), "points": entry["points"], "graphs": entry["graphs"]}
        report["units"] = UNITS
        report["command"] = [*commands, "python benchmarks/compile_probe.py " + " ".join(argv or sys.argv[1:])]
        output.write_text(yaml.safe_dump(report, sort_keys=False, width=120))
        print(f"wrote {output}")
        return 0
    import torch
    import transformers

    torch.set_num_threads(1)
    _record_nodes()
    report = {"command": "python benchmarks/compile_probe.py " + " ".join(argv or sys.argv[1:]),
              "torch": str(torch.__version__), "transformers": str(transformers.__version__), "units": UNITS,
              "grid": [dict(zip(("hidden", "ffn", "heads", "kv_heads", "seq", "batch", "vocab"), p)) for p in GRID],
              "no_kv_grid": [dict(zip(("hidden", "ffn", "heads", "kv_heads", "seq", "batch", "vocab"), p))
                             for p in NO_KV_GRID],
              "families": {}}
    if output.exists() and not args.no_write:  # probing some families keeps the others' results
        previous = yaml.safe_load(output.read_text()) or {}
        report["families"].update(previous.get("families", {}))
    for family in args.families.split(","):
        fam: dict = dict(report["families"].get(family, {}))
        grid = GRID if family not in ("gpt2", "bert") else NO_KV_GRID
        for mode in args.modes.split(","):
            points, graphs = [], set()
            for point in grid:
                layer, rest = per_layer(family, point, mode)
                tokens = point[4] * point[5]
                graphs.add((layer.pop("graphs"), layer.pop("graph_breaks"), rest.pop("graphs"), rest.pop("graph_breaks")))
                points.append({"point": list(point), "tokens": tokens,
                               "layer": {k: round(v, 1) for k, v in sorted(layer.items())},
                               "outside_layers": {k: round(v, 1) for k, v in sorted(rest.items())}})
                if args.verbose:
                    print(family, mode, point, {k: round(v / tokens, 2) if not k.startswith(("kernels", "cpu")) else v
                                                for k, v in sorted(layer.items())}, flush=True)
            entry = fit_entry(family, points)
            entry["points"] = points
            entry["graphs"] = [dict(zip(("graphs_2_layers", "graph_breaks_2_layers", "graphs_1_layer",
                                         "graph_breaks_1_layer"), g)) for g in sorted(graphs)]
            fam[mode] = entry
            print(f"{family} {mode}: " + ", ".join(f"{k}={v}" for k, v in entry["layer"].items()
                                                  if k.startswith(("saved.", "kernels.", "bytes."))), flush=True)
            report["families"][family] = fam
            if not args.no_write:  # after every mode: a long run's finished parts are kept
                output.write_text(yaml.safe_dump(report, sort_keys=False, width=120))
    if not args.no_write:
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
