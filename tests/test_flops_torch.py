"""FLOPs and parameters against torch itself.

Small reference modules written here replicate the Hugging Face module structure (Llama/Mixtral/
Qwen2/DeepSeek/GPT-2/BERT: the same projections, biases, norms, routers and heads) with attention
written out as matmuls. ``torch.utils.flop_counter.FlopCounterMode`` counts their matmul FLOPs
(forward, and forward + backward), which must match :func:`estimator.model.flops.flops_per_token`; on the
meta device the same modules at real sizes must have :func:`estimator.model.arch.count_params` parameters.
The MoE routes top-k with gathered per-expert matmuls, so only the selected tokens are counted.
Needs torch (a test-only dependency); skipped without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from estimator.model.arch import MLA, Architecture, MoE
from estimator.model.hf_config import load_architecture
from estimator.model.params import count_params
from estimator.model.flops import flops_per_token

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

ARCH_DIR = Path(__file__).resolve().parent.parent / "catalogs" / "architectures"


def norm(arch: Architecture, width: int) -> nn.Module:
    return nn.LayerNorm(width) if arch.norm == "layernorm" else nn.RMSNorm(width)


class FFN(nn.Module):
    def __init__(self, arch: Architecture, width: int, bias: bool):
        super().__init__()
        h = arch.hidden_size
        self.gated = arch.gated_ffn
        if self.gated:  # LlamaMLP: gate_proj, up_proj, down_proj
            self.gate_proj = nn.Linear(h, width, bias=bias)
        self.up_proj = nn.Linear(h, width, bias=bias)
        self.down_proj = nn.Linear(width, h, bias=bias)

    def forward(self, x):
        if self.gated:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(F.gelu(self.up_proj(x)))


class MoELayer(nn.Module):
    """Router (h -> E, no bias; DeepSeek-V3 adds a per-expert bias used only for selection), top-k
    routed experts run on the gathered tokens that chose them, plus always-on shared experts."""

    def __init__(self, arch: Architecture):
        super().__init__()
        moe = arch.moe
        self.top_k = moe.experts_per_token
        self.gate = nn.Linear(arch.hidden_size, moe.num_experts, bias=False)
        self.bias = nn.Parameter(torch.zeros(moe.num_experts)) if moe.router_bias else None
        self.experts = nn.ModuleList(FFN(arch, moe.expert_ffn_size, False) for _ in range(moe.num_experts))
        self.shared = FFN(arch, moe.shared_ffn_size, False) if moe.num_shared_experts else None

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = F.softmax(self.gate(x), dim=-1)
        choice = probs + self.bias if self.bias is not None else probs
        index = torch.topk(choice, self.top_k, dim=-1).indices
        weights = probs.gather(1, index)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(index == e)
            if token.numel():
                out = out.index_add(0, token, expert(x[token]) * weights[token, slot, None])
        if self.shared is not None:
            out = out + self.shared(x)
        return out.reshape(shape)


class Attention(nn.Module):
    def __init__(self, arch: Architecture):
        super().__init__()
        h = arch.hidden_size
        self.arch = arch
        self.mla = arch.mla
        if self.mla is not None:  # DeepseekV3Attention
            m, n = self.mla, arch.num_heads
            if m.q_lora_rank is None:
                self.q_proj = nn.Linear(h, n * m.qk_head_dim, bias=False)
            else:
                self.q_a_proj = nn.Linear(h, m.q_lora_rank, bias=arch.qkv_bias)
                self.q_a_layernorm = nn.RMSNorm(m.q_lora_rank)
                self.q_b_proj = nn.Linear(m.q_lora_rank, n * m.qk_head_dim, bias=False)
            self.kv_a_proj_with_mqa = nn.Linear(h, m.kv_lora_rank + m.qk_rope_head_dim, bias=arch.qkv_bias)
            self.kv_a_layernorm = nn.RMSNorm(m.kv_lora_rank)
            self.kv_b_proj = nn.Linear(m.kv_lora_rank, n * (m.qk_nope_head_dim + m.v_head_dim), bias=False)
            self.o_proj = nn.Linear(n * m.v_head_dim, h, bias=arch.attn_out_bias)
        else:  # LlamaAttention / Qwen2Attention / GPT-2 c_attn split / BertSelfAttention
            self.q_proj = nn.Linear(h, arch.q_dim, bias=arch.qkv_bias)
            self.k_proj = nn.Linear(h, arch.kv_dim, bias=arch.qkv_bias)
            self.v_proj = nn.Linear(h, arch.kv_dim, bias=arch.qkv_bias)
            self.o_proj = nn.Linear(arch.q_dim, h, bias=arch.attn_out_bias)
            if arch.qk_norm:
                self.q_norm, self.k_norm = nn.RMSNorm(arch.head_dim), nn.RMSNorm(arch.head_dim)

    def forward(self, x):
        b, s, _ = x.shape
        a, n = self.arch, self.arch.num_heads
        if self.mla is not None:
            m = self.mla
            q = self.q_proj(x) if m.q_lora_rank is None else self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
            q = q.view(b, s, n, m.qk_head_dim).transpose(1, 2)
            latent, k_rope = self.kv_a_proj_with_mqa(x).split([m.kv_lora_rank, m.qk_rope_head_dim], dim=-1)
            kv = self.kv_b_proj(self.kv_a_layernorm(latent)).view(b, s, n, m.qk_nope_head_dim + m.v_head_dim)
            k_nope, v = kv.transpose(1, 2).split([m.qk_nope_head_dim, m.v_head_dim], dim=-1)
            k = torch.cat([k_nope, k_rope.view(b, 1, s, m.qk_rope_head_dim).expand(b, n, s, -1)], dim=-1)
        else:
            q = self.q_proj(x).view(b, s, n, a.head_dim).transpose(1, 2)
            k = self.k_proj(x).view(b, s, a.num_kv_heads, a.head_dim).transpose(1, 2)
            v = self.v_proj(x).view(b, s, a.num_kv_heads, a.head_dim).transpose(1, 2)
            if a.qk_norm:
                q, k = self.q_norm(q), self.k_norm(k)
            group = n // a.num_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
        if a.causal:
            scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
        out = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, s, -1)
        return self.o_proj(out)


class Layer(nn.Module):
    def __init__(self, arch: Architecture, moe_layer: bool):
        super().__init__()
        self.input_layernorm = norm(arch, arch.hidden_size)
        self.self_attn = Attention(arch)
        self.post_attention_layernorm = norm(arch, arch.hidden_size)
        self.mlp = MoELayer(arch) if moe_layer else FFN(arch, arch.ffn_size, arch.mlp_bias)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(nn.Module):
    def __init__(self, arch: Architecture):
        super().__init__()
        h = arch.hidden_size
        self.arch = arch
        self.embed_tokens = nn.Embedding(arch.vocab_size, h)
        self.wpe = nn.Embedding(arch.max_position_embeddings, h) if arch.position_embedding == "learned" else None
        self.token_type = nn.Embedding(arch.type_vocab_size, h) if arch.type_vocab_size else None
        self.embed_norm = norm(arch, h) if arch.embedding_norm else None
        self.layers = nn.ModuleList(Layer(arch, arch.moe is not None and arch.moe.is_moe_layer(i))
                                    for i in range(arch.num_layers))
        self.norm = norm(arch, h) if arch.final_norm else None
        self.lm_head = nn.Linear(h, arch.vocab_size, bias=False) if arch.lm_head and not arch.tie_embeddings else None
        self.pooler = nn.Linear(h, h) if arch.pooler else None
        if arch.mlm_head:
            self.mlm_transform, self.mlm_norm = nn.Linear(h, h), norm(arch, h)
            self.mlm_bias = nn.Parameter(torch.zeros(arch.vocab_size))

    def forward(self, ids):
        x = self.embed_tokens(ids)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(ids.shape[1]))
        if self.token_type is not None:
            x = x + self.token_type(torch.zeros_like(ids))
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        for layer in self.layers:
            x = layer(x)
        if self.norm is not None:
            x = self.norm(x)
        outputs = []
        if self.arch.lm_head:
            outputs.append(self.lm_head(x) if self.lm_head is not None else F.linear(x, self.embed_tokens.weight))
        if self.arch.mlm_head:
            y = self.mlm_norm(F.gelu(self.mlm_transform(x)))
            outputs.append(F.linear(y, self.embed_tokens.weight, self.mlm_bias))
        if self.pooler is not None:
            outputs.append(torch.tanh(self.pooler(x[:, 0])))
        if not outputs:
            outputs.append(x)
        return outputs


def measured_flops(model: Model, batch: int, seq_len: int) -> tuple[int, int]:
    """(forward, backward) matmul FLOPs of one step on random tokens, as torch counts them."""
    torch.manual_seed(0)
    ids = torch.randint(0, model.arch.vocab_size, (batch, seq_len))
    with FlopCounterMode(display=False) as forward:
        outputs = model(ids)
    loss = sum(o.float().square().mean() for o in outputs)
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    return forward.get_total_flops(), backward.get_total_flops()


def tiny(**overrides) -> Architecture:
    fields = dict(name="tiny", model_type="llama", num_layers=2, hidden_size=64, num_heads=8, num_kv_heads=2,
                  head_dim=8, ffn_size=96, vocab_size=101)
    fields.update(overrides)
    return Architecture(**fields)


SMALL = {
    "dense GQA SwiGLU (Llama)": tiny(),
    "GQA with biases (Qwen2)": tiny(qkv_bias=True, model_type="qwen2"),
    "MoE top-2 of 4 (Mixtral)": tiny(moe=MoE(num_experts=4, experts_per_token=2, expert_ffn_size=48)),
    "MoE + shared + dense-first + MLA (DeepSeek-V3)": tiny(
        num_layers=3, num_kv_heads=8, head_dim=16, model_type="deepseek_v3",
        mla=MLA(q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16),
        moe=MoE(num_experts=4, experts_per_token=2, expert_ffn_size=32, num_shared_experts=1, shared_ffn_size=32,
                first_k_dense=1, router_bias=True)),
    "MLA without q LoRA (DeepSeek-V2-Lite)": tiny(
        num_kv_heads=8, head_dim=16, model_type="deepseek_v2",
        mla=MLA(q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16)),
    "learned positions, tied head, LayerNorm, GELU (GPT-2)": tiny(
        num_kv_heads=8, gated_ffn=False, tie_embeddings=True, position_embedding="learned",
        max_position_embeddings=64, qkv_bias=True, attn_out_bias=True, mlp_bias=True, norm="layernorm",
        model_type="gpt2"),
    "encoder with pooler (BERT)": tiny(
        num_kv_heads=8, gated_ffn=False, position_embedding="learned", max_position_embeddings=64, qkv_bias=True,
        attn_out_bias=True, mlp_bias=True, norm="layernorm", embedding_norm=True, final_norm=False,
        type_vocab_size=2, pooler=True, lm_head=False, causal=False, model_type="bert"),
    "encoder with masked-LM head (BERT)": tiny(
        num_kv_heads=8, gated_ffn=False, position_embedding="learned", max_position_embeddings=64, qkv_bias=True,
        attn_out_bias=True, mlp_bias=True, norm="layernorm", embedding_norm=True, final_norm=False,
        type_vocab_size=2, pooler=True, lm_head=False, mlm_head=True, causal=False, model_type="bert"),
}


@pytest.mark.parametrize("label", list(SMALL))
def test_forward_and_training_flops_match_torch_flop_counter(label):
    arch = SMALL[label]
    batch, seq_len = 2, 16
    forward, backward = measured_flops(Model(arch), batch, seq_len)
    expected = flops_per_token(arch, seq_len)
    assert forward == pytest.approx(expected.forward * batch * seq_len, rel=1e-9)
    assert forward + backward == pytest.approx(expected.train_model * batch * seq_len, rel=1e-9)


@pytest.mark.parametrize("label", list(SMALL))
def test_reference_module_parameters_equal_count_params(label):
    arch = SMALL[label]
    model = Model(arch)
    assert sum(p.numel() for p in model.parameters()) == count_params(arch).total


@pytest.mark.parametrize("model_id", ["gpt2-small", "bert-base", "llama-3.1-8b", "deepseek-v3"])
def test_real_sized_reference_modules_on_meta_device_have_the_counted_parameters(model_id):
    arch = load_architecture(model_id, ARCH_DIR)
    if model_id == "deepseek-v3":  # 58 x 256 experts as separate modules: count one MoE layer and scale
        one = Architecture(**{**{f: getattr(arch, f) for f in arch.__dataclass_fields__}, "num_layers": 4})
        with torch.device("meta"):
            model = Model(one)
        layer = lambda i: sum(p.numel() for p in model.layers[i].parameters())  # noqa: E731
        rest = sum(p.numel() for p in model.parameters()) - sum(layer(i) for i in range(4))
        total = rest + 3 * layer(0) + 58 * layer(3)
    else:
        with torch.device("meta"):
            model = Model(arch)
        total = sum(p.numel() for p in model.parameters())
    assert total == count_params(arch).total
