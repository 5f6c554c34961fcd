"""What Hugging Face transformers' eager modules keep for backward and launch per training step,
counted on the CPU with small configs (no GPU needed), fitted to per-token-per-layer formulas.

Usage (from the repository root, with torch and transformers installed)::

    python benchmarks/stack_probe.py                       # print the fit, write benchmarks/stack_probe.yaml
    python benchmarks/stack_probe.py --no-write --verbose  # every probed config

For each family (Llama, Qwen2, GPT-2) and mode it builds ``AutoModelForCausalLM.from_config(cfg,
attn_implementation="sdpa")`` with 1 and 2 layers and runs one training step (forward with
``labels=input_ids``, backward, fused AdamW) as the H200 rows did
(../shared/measurements/h200-2026-12/hf_variants.py). The difference between the two is one layer;
what the 1-layer model has beyond it is the embedding, final norm, head and loss.

(a) **Saved for backward**: ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor autograd
    keeps. Storages are deduplicated by ``untyped_storage().data_ptr()`` (a tensor saved by two ops,
    or a view of another saved tensor, counts once); parameters themselves are not activations and are
    counted apart.
(b) **Launched**: a ``TorchDispatchMode`` sees every aten op below autograd, forward, backward and
    optimizer: its class (matmul / elementwise / reduction / copy / optimizer; views launch nothing)
    and the bytes of its tensor inputs and outputs. Casts of a weight (autocast's bf16 copy forward)
    or of a weight's gradient (back to fp32) are their own class, ``weight_cast``, counted per parameter.

Modes: ``amp`` = fp32 weights + autocast bf16 (the Trainer's ``bf16=True``); ``purebf16`` = the model
in bf16; ``ckpt`` = ``gradient_checkpointing_enable()`` on top of amp.

Two differences between the CPU and a CUDA device are handled, not ignored:

* CPU autocast casts other op lists than CUDA's (aten/src/ATen/autocast_mode.cpp): CUDA runs
  ``pow``, ``rsqrt``, ``exp``, ``log_softmax``, ``layer_norm`` ... in fp32 and matmuls/SDPA in bf16.
  :class:`CudaAutocast` applies CUDA's lists at the torch-function level (above autograd, where
  autocast sits), so autograd saves what it saves on a GPU.
* CPU dropout saves a mask in the input's dtype; CUDA's fused ``native_dropout`` saves a 1-byte bool
  mask. Configs are probed with dropout 0 (nothing saved, nothing launched) and the dropout sites are
  counted apart (``dropout_sites_per_layer``), each 1 byte per element saved on CUDA.

Results are per token (``micro_batch x seq``) so that batch and sequence fall out; coefficients are
fitted by least squares over the varied hidden / FFN / heads / KV-heads / sequence values and the
residual is reported (0 means the formula is exact).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "benchmarks" / "stack_probe.yaml"

MATMUL = {"mm", "addmm", "bmm", "baddbmm", "_scaled_dot_product_flash_attention_for_cpu",
          "_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention",
          "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention",
          "_scaled_dot_product_efficient_attention_backward", "convolution", "convolution_backward"}
REDUCTION = {"sum", "mean", "amax", "amin", "max", "min", "_log_softmax", "_log_softmax_backward_data", "_softmax",
             "_softmax_backward_data", "nll_loss_forward", "nll_loss_backward", "native_layer_norm",
             "native_layer_norm_backward", "var_mean", "norm", "linalg_vector_norm", "_fused_rms_norm",
             "_fused_rms_norm_backward", "logsumexp", "prod", "cumsum"}
COPY = {"_to_copy", "copy_", "clone", "cat", "stack", "index_select", "embedding", "embedding_dense_backward",
        "gather", "scatter", "scatter_add", "index_add", "new_empty_strided", "empty_like", "zeros_like", "fill_",
        "zero_", "full", "zeros", "ones", "empty", "empty_strided", "new_zeros", "new_empty", "index_put_",
        "masked_fill", "arange", "full_like", "ones_like", "_unsafe_index", "slice_backward", "select_backward",
        "expand_copy", "repeat", "where"}
OPTIMIZER = {"_fused_adamw_", "_fused_adam_"}

# CUDA autocast's op lists (aten/src/ATen/autocast_mode.cpp, KERNEL_CUDA lower_precision_fp / fp32 /
# fp32_set_opt_dtype), by the torch-function names HF modules call them through.
TO_BF16 = {"linear", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "baddbmm", "einsum",
           "scaled_dot_product_attention", "conv1d", "conv2d", "prelu"}
TO_FP32 = {"pow", "__pow__", "__rpow__", "rsqrt", "exp", "expm1", "log", "log1p", "log2", "log10", "reciprocal",
           "softplus", "layer_norm", "group_norm", "cross_entropy", "nll_loss", "log_softmax", "softmax",
           "logsumexp", "sum", "cumsum", "prod", "mse_loss", "erfinv", "acos", "asin", "cosh", "sinh", "tan",
           "norm", "cosine_similarity", "kl_div", "l1_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits"}


def _cast(value, dtype, torch):
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64:
        return value.to(dtype) if value.dtype != dtype else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype, torch) for v in value)
    return value


def make_modes():
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class CudaAutocast(TorchFunctionMode):
        """CUDA's autocast(bf16) casting rules, applied on the CPU (see the module docstring)."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name in TO_BF16:
                args, kwargs = _cast(args, torch.bfloat16, torch), {k: _cast(v, torch.bfloat16, torch)
                                                                     for k, v in kwargs.items()}
            elif name in TO_FP32 and "dtype" not in kwargs:
                args = _cast(args, torch.float32, torch)
            return func(*args, **kwargs)

    class OpCounter(TorchDispatchMode):
        """Every aten op launched: class, count and bytes read + written, per phase."""

        def __init__(self):
            super().__init__()
            self.phase = "forward"
            self.kernels = defaultdict(float)  # (phase, class) -> ops
            self.bytes = defaultdict(float)  # (phase, class) -> bytes read + written
            self.flops = defaultdict(float)
            self.names = defaultdict(int)
            self.params: set[int] = set()  # storages of the parameters
            self.param_shapes: set[tuple[int, ...]] = set()  # a cast of this shape is of a weight or its gradient
            self.weight_copies: set[int] = set()  # storages cast from a parameter (autocast's bf16 weights)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            schema = func._schema
            name = schema.name.split("::")[-1]
            returns = schema.returns
            if returns and all(r.alias_info is not None and not r.alias_info.is_write for r in returns):
                return out  # a view: no kernel
            if name in {"detach", "alias", "lift_fresh", "_local_scalar_dense", "set_", "resize_", "_unsafe_view",
                        "view", "_reshape_alias", "_record_function_enter_new", "_record_function_exit"}:
                return out
            if name == "_to_copy" and isinstance(args[0], torch.Tensor) and \
                    args[0].untyped_storage().data_ptr() in self.params:
                self.weight_copies.add(out.untyped_storage().data_ptr())
            moved = _tensor_bytes(args, torch) + _tensor_bytes(kwargs, torch) + _tensor_bytes(out, torch)
            weight_cast = name == "_to_copy" and isinstance(out, torch.Tensor) and tuple(out.shape) in self.param_shapes
            cls = ("optimizer" if name in OPTIMIZER else "weight_cast" if weight_cast else "matmul" if name in MATMUL else
                   "reduction" if name in REDUCTION else "copy" if name in COPY else "elementwise")
            self.kernels[(self.phase, cls)] += 1
            self.bytes[(self.phase, cls)] += moved
            self.names[(self.phase, name)] += 1
            if name in {"mm", "addmm", "bmm", "baddbmm"}:
                a, b = (args[-2], args[-1]) if name in {"mm", "bmm"} else (args[1], args[2])
                self.flops[self.phase] += 2 * a.numel() * b.shape[-1]
            return out

    return CudaAutocast, OpCounter


def _tensor_bytes(value, torch) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.numel() * value.element_size())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v, torch) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v, torch) for v in value.values())
    return 0.0


FAMILIES = {
    # name: (config class, base fields, how to set hidden / ffn / heads / kv heads / layers)
    "llama": ("LlamaConfig", dict(vocab_size=512, max_position_embeddings=4096, tie_word_embeddings=True,
                                  hidden_act="silu", attention_bias=False, mlp_bias=False),
              ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers")),
    "qwen2": ("Qwen2Config", dict(vocab_size=512, max_position_embeddings=4096, tie_word_embeddings=True,
                                  hidden_act="silu", use_sliding_window=False),
              ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers")),
    "gpt2": ("GPT2Config", dict(vocab_size=512, n_positions=4096, activation_function="gelu_new", resid_pdrop=0.0,
                                embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True),
             ("n_embd", "n_inner", "n_head", None, "n_layer")),
    "bert": ("BertConfig", dict(vocab_size=512, max_position_embeddings=4096, hidden_act="gelu",
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
             ("hidden_size", "intermediate_size", "num_attention_heads", None, "num_hidden_layers")),
}
# (hidden, ffn, heads, kv heads, seq, batch): varied one at a time around the first
GRID = [(128, 384, 4, 2, 64, 2, 512), (256, 384, 4, 2, 64, 2, 512), (128, 768, 4, 2, 64, 2, 512),
        (128, 384, 8, 2, 64, 2, 512), (128, 384, 4, 4, 64, 2, 512), (128, 384, 4, 2, 128, 2, 512),
        (128, 384, 4, 2, 64, 4, 512), (128, 384, 4, 2, 64, 2, 1024)]


def build(family: str, hidden: int, ffn: int, heads: int, kv_heads: int, layers: int, mode: str, vocab: int):
    import torch
    import transformers

    cls_name, base, keys = FAMILIES[family]
    values = (hidden, ffn, heads, kv_heads, layers)
    fields = dict(base, vocab_size=vocab)
    for key, value in zip(keys, values):
        if key is not None:
            fields[key] = value
    if family == "llama":
        fields["head_dim"] = hidden // heads
    cfg = getattr(transformers, cls_name)(**fields)
    torch.manual_seed(0)
    auto = transformers.AutoModelForMaskedLM if family == "bert" else transformers.AutoModelForCausalLM
    model = auto.from_config(cfg, attn_implementation="sdpa")
    model = model.to(torch.bfloat16 if mode == "purebf16" else torch.float32)
    model.train()
    if mode == "ckpt":
        # the recompute runs inside the backward engine, where the casting mode is not active: it is
        # re-entered there (context_fn's second context), as autocast is by torch.utils.checkpoint on a GPU
        CudaAutocast, _ = make_modes()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={
            "use_reentrant": False, "context_fn": lambda: (contextlib.nullcontext(), CudaAutocast())})
    return model


def probe_step(family: str, hidden: int, ffn: int, heads: int, kv_heads: int, seq: int, batch: int, vocab: int,
               layers: int, mode: str) -> dict[str, float]:
    """One training step's saved bytes (by dtype) and launched kernels/bytes (by phase and class)."""
    import torch

    CudaAutocast, OpCounter = make_modes()
    model = build(family, hidden, ffn, heads, kv_heads, layers, mode, vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randint(0, vocab, (batch, seq))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, tuple[str, float]] = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            ptr = t.untyped_storage().data_ptr()
            kind = ("parameter" if ptr in params else "weight_copy" if ptr in counter.weight_copies else
                    str(t.dtype).replace("torch.", ""))
            saved.setdefault(ptr, (kind, float(t.untyped_storage().nbytes())))
        return t

    amp = CudaAutocast() if mode in {"amp", "ckpt"} else contextlib.nullcontext()
    with amp:  # a first step, not counted, creates the optimizer's states: the counted one is a steady step
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    counter = OpCounter()
    counter.params = params
    counter.param_shapes = {tuple(p.shape) for p in model.parameters() if p.dim() == 2}
    # the casting rules stay on through backward: checkpointing recomputes the forward there, under the
    # autocast state of the forward (torch.utils.checkpoint restores it)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), counter, amp:
        out = model(input_ids=x, labels=x)
        logits_bytes = float(out.logits.untyped_storage().nbytes())
        counter.phase = "backward"
        out.loss.backward()
        counter.phase = "optimizer"
        opt.step()
        opt.zero_grad(set_to_none=True)
    result: dict[str, float] = {"logits_bytes": logits_bytes, "params": float(sum(p.numel() for p in model.parameters()))}
    for kind, nbytes in saved.values():
        result[f"saved.{kind}"] = result.get(f"saved.{kind}", 0.0) + nbytes
    for (phase, cls), n in counter.kernels.items():
        result[f"kernels.{phase}.{cls}"] = n
        result[f"bytes.{phase}.{cls}"] = counter.bytes[(phase, cls)]
    for phase, f in counter.flops.items():
        result[f"flops.{phase}"] = f
    result["_names"] = dict(counter.names)  # type: ignore[assignment]
    return result


def per_layer(family: str, point: tuple[int, ...], mode: str) -> tuple[dict[str, float], dict[str, float]]:
    """(one layer, the rest) for a grid point: the 2-layer step minus the 1-layer step."""
    one = probe_step(family, *point, 1, mode)
    two = probe_step(family, *point, 2, mode)
    keys = (set(one) | set(two)) - {"_names"}
    layer = {k: two.get(k, 0.0) - one.get(k, 0.0) for k in keys}
    rest = {k: one.get(k, 0.0) - layer[k] for k in keys}
    layer["_names"] = {k: two["_names"].get(k, 0) - one["_names"].get(k, 0)  # type: ignore[assignment]
                       for k in set(one["_names"]) | set(two["_names"])}
    return layer, rest


def fit(rows: list[tuple[dict[str, float], float]], basis: tuple[str, ...]) -> tuple[dict[str, float], float]:
    """Least-squares coefficients of value = sum(c_i x basis_i) and the worst relative residual."""
    import torch

    a = torch.tensor([[feat[name] for name in basis] for feat, _ in rows], dtype=torch.float64)
    y = torch.tensor([[value] for _, value in rows], dtype=torch.float64)
    coef = torch.linalg.lstsq(a, y).solution
    pred = (a @ coef).flatten()
    worst = max((abs(p - v) / max(abs(v), 1e-9) for p, v in zip(pred.tolist(), y.flatten().tolist())), default=0.0)
    return {name: round(float(c), 3) for name, c in zip(basis, coef.flatten().tolist())}, round(worst, 4)


CKPT_NOTE = ("torch.utils.checkpoint (non-reentrant) installs its own saved-tensor hooks inside each layer, so "
             "the probe's hooks do not see what the layer keeps; it keeps the layer's input (the residual stream, "
             "fp32 under autocast with fp32 weights) and, during its backward, one layer's activations as in amp")
PER_PARAM = ("saved.parameter", "saved.weight_copy", "bytes.optimizer.", "bytes.forward.weight_cast",
             "bytes.backward.weight_cast", "kernels.")


def normalise(row: dict[str, float], tokens: int) -> dict[str, float]:
    """Bytes per token, except what scales with the parameters (per parameter) and kernel counts (as is)."""
    out = {}
    for key, value in row.items():
        if key == "params":
            continue
        if key.startswith("kernels."):
            out[key] = value
        elif key.startswith(PER_PARAM):
            out[key + ".per_param"] = value / max(row["params"], 1.0)
        else:
            out[key] = value / tokens
    return out


def features(family: str, point: tuple[int, ...]) -> dict[str, float]:
    hidden, ffn, heads, kv, seq, batch, vocab = point
    kv_dim = (hidden // heads) * (kv if family not in ("gpt2", "bert") else heads)
    return {"hidden": hidden, "ffn": ffn, "kv_dim": kv_dim, "heads": heads, "one": 1.0, "vocab": vocab,
            "heads_x_seq": heads * seq}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="llama,qwen2,gpt2,bert")
    parser.add_argument("--modes", default="amp,purebf16,ckpt")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    import torch
    import transformers
    import yaml

    torch.set_num_threads(1)
    report: dict = {"command": "python benchmarks/stack_probe.py " + " ".join(argv or sys.argv[1:]),
                    "torch": str(torch.__version__), "transformers": str(transformers.__version__),
                    "units": "bytes per token (micro_batch x seq) per transformer layer; kernels per layer; *.per_param: "
                             "bytes per parameter (the layer's, or outside the layers, the embedding's and head's); "
                             "outside_layers: per token for the embedding, final norm, head and loss, as "
                             "coefficients of hidden and vocab",
                    "grid": [dict(zip(("hidden", "ffn", "heads", "kv_heads", "seq", "batch", "vocab"), p))
                             for p in GRID],
                    "families": {}}
    for family in args.families.split(","):
        fam: dict = {}
        for mode in args.modes.split(","):
            layer_rows, rest_rows, names = [], [], {}
            for point in GRID:
                layer, rest = per_layer(family, point, mode)
                tokens = point[4] * point[5]
                names = layer.pop("_names")
                layer_rows.append((point, normalise(layer, tokens)))
                rest_rows.append((point, normalise(rest, tokens)))
                if args.verbose:
                    print(family, mode, point, {k: round(v / tokens, 1) for k, v in sorted(layer.items())})
            entry: dict = {"layer": {}, "outside_layers": {}}
            keys = sorted({k for _, row in layer_rows for k in row})
            for key in keys:
                rows = [(features(family, p), row.get(key, 0.0)) for p, row in layer_rows]
                if all(abs(v) < 1.0 for _, v in rows) and not key.startswith("kernels."):
                    continue  # under a byte per token: RoPE tables, token ids
                if mode == "ckpt" and key.startswith("saved."):
                    continue  # the checkpoint's own hooks replace these inside a layer (see CKPT_NOTE)
                basis = ("hidden", "ffn", "kv_dim") if family not in ("gpt2", "bert") else ("hidden", "ffn")
                if key.startswith("kernels.") or key.endswith(".per_param"):
                    basis = ("one",)
                coef, worst = fit(rows, basis)
                entry["layer"][key] = {**{k: v for k, v in coef.items() if abs(v) > 1e-6}, "worst_residual": worst}
            for key in sorted({k for _, row in rest_rows for k in row}):
                rows = [(features(family, p), row.get(key, 0.0)) for p, row in rest_rows]
                if all(abs(v) < 1e-9 for _, v in rows):
                    continue
                basis = ("one",) if key.startswith("kernels.") or key.endswith(".per_param") else ("hidden", "vocab")
                coef, worst = fit(rows, basis)
                entry["outside_layers"][key] = {**{k: v for k, v in coef.items() if abs(v) > 1e-6},
                                                "worst_residual": worst}
            if mode == "ckpt":
                entry["saved_note"] = CKPT_NOTE
            entry["ops_per_layer"] = {f"{phase}.{name}": n for (phase, name), n in sorted(names.items()) if n}
            fam[mode] = entry
            print(f"{family} {mode}: saved per token per layer " + ", ".join(
                f"{k[6:]}={v}" for k, v in entry["layer"].items() if k.startswith("saved.")))
        report["families"][family] = fam
    if not args.no_write:
        OUTPUT.write_text(yaml.safe_dump(report, sort_keys=False, width=120))
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
