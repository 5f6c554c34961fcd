"""A user's own model, as ``gpucost profile --torch-model benchmarks/user_llama.py:tiny_llama`` takes
it: a Hugging Face ``LlamaForCausalLM`` built from a config.json beside this file, random token
ids as the batch (``labels`` = the inputs, so the model computes its own next-token loss) and
AdamW, the way a Hugging Face training script builds them. ``benchmarks/torch_model_loop.py``
profiles it, estimates a run of it and trains it for real.

- ``tiny_llama``: benchmarks/configs/tiny-llama.json (4 layers, d_model 256, 5.0M parameters),
  256-token sequences, batch 8;
- ``micro_llama``: benchmarks/configs/micro-llama.json (2 layers, d_model 64), 64-token sequences,
  batch 4: the size tests/test_torch_model_loop.py runs.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
SEQ_LEN = {"tiny-llama": 256, "micro-llama": 64}
LEARNING_RATE = 3e-4


def build(name: str, batch_size: int, device=None, seed: int = 0) -> dict:
    """The model, one batch, the optimizer and the id of config ``name`` (a file in configs/)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**json.loads((CONFIGS / f"{name}.json").read_text()))
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    device = torch.device(device or "cpu")
    model = LlamaForCausalLM(config).to(device=device, dtype=torch.float32)
    ids = torch.randint(0, config.vocab_size, (batch_size, SEQ_LEN[name]), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    return {"model": model, "batch": {"input_ids": ids, "labels": ids}, "optimizer": optimizer, "id": name}


def tiny_llama(batch_size: int = 8, device=None) -> dict:
    return build("tiny-llama", batch_size, device)


def micro_llama(batch_size: int = 4, device=None) -> dict:
    return build("micro-llama", batch_size, device)
