"""A user's own small Hugging Face Llama for `gpucost profile --torch-model benchmarks/hf_small.py:small_llama`,
and for the independent training loop benchmarks/hf_loop.py that benchmarks/gpu_check.sh holds the
profile and the estimate against.

It is what a user's file looks like (the README's H200 run used the same form, hfmodel.py): the model
built from a config with ``AutoModelForCausalLM.from_config(..., attn_implementation="sdpa")`` in
fp32 (the GPU profile trains it under bf16 autocast, as the HF Trainer's ``bf16=True`` does), random
tokens as input and labels, AdamW (fused on CUDA). Sizes: on a GPU a 12-layer, 1024-wide Llama
(about 190M parameters with its 32,000-token vocabulary) at seq 1024 and batch 8, a step of tens of
milliseconds on an H200; on a CPU a 2-layer, 128-wide one at seq 128 and batch 4, so a plumbing run
stays short. ``python benchmarks/hf_small.py cuda|cpu OUT.json`` writes the config as config.json
(for ``gpucost estimate --hf-config``) and prints the shape of the batch.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

SIZES = {  # device kind -> (config, seq_len, batch)
    "gpu": (dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16,
                 num_key_value_heads=16, vocab_size=32000, max_position_embeddings=2048), 1024, 8),
    "cpu": (dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=1000, max_position_embeddings=256), 128, 4),
}


def _kind(device: torch.device) -> str:
    return "gpu" if device.type == "cuda" else "cpu"


def config(device: Any = None) -> Any:
    from transformers import LlamaConfig

    settings, _, _ = SIZES[_kind(torch.device(device or "cpu"))]
    return LlamaConfig(**settings, tie_word_embeddings=False, model_type="llama")


def seq_len(device: Any = None) -> int:
    return SIZES[_kind(torch.device(device or "cpu"))][1]


def small_llama(batch_size: int | None = None, device: Any = None) -> dict[str, Any]:
    """The model, a batch of random tokens (labels = inputs, the model computes its own loss), AdamW."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device or "cpu")
    _, seq, default_batch = SIZES[_kind(device)]
    batch_size = batch_size or default_batch
    torch.manual_seed(0)
    with device:
        model = AutoModelForCausalLM.from_config(config(device), attn_implementation="sdpa")
    model = model.to(device=device, dtype=torch.float32)
    tokens = torch.randint(0, model.config.vocab_size, (batch_size, seq), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    return {"model": model, "batch": {"input_ids": tokens, "labels": tokens}, "optimizer": optimizer,
            "id": "hf-small-llama"}


if __name__ == "__main__":
    where = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    cfg = config(where)
    if len(sys.argv) > 2:
        cfg.to_json_file(sys.argv[2])
    _, seq, batch = SIZES[_kind(torch.device(where))]
    print(json.dumps({"seq_len": seq, "batch": batch, "hidden_size": cfg.hidden_size,
                      "num_hidden_layers": cfg.num_hidden_layers, "vocab_size": cfg.vocab_size}))
