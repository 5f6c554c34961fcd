"""The training stack as an input (--stack): the catalog, the flags, the layouts a stack refuses, the
memory decomposition, and the golden check against real training steps measured on one H200
(../shared/measurements/h200-2026-12/README.md, "Real training steps" table; catalogs/stack_runs.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from estimator.catalog.fields import catalog_dir
from estimator.catalog.stacks import Stack, load_stack_runs, load_stacks
from estimator.errors import CatalogError, InputError
from estimator.model.hf_config import load_architecture
from estimator.request import EstimateRequest
from estimator.timing.stacks import StackChoice, layer_kind, stack_memory
from estimator.vocab import STACKS

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ROOT / "catalogs" / "architectures"
LLAMA_1B = str(ARCHS / "llama-3.2-1b.json")
GPT2 = str(ARCHS / "gpt2-small.json")
H200_ROW = ["--gpu", "h200", "--num-gpus", "1", "--precision", "bf16", "--tokens", "1e9"]


def llama_1b():
    return load_architecture("llama-3.2-1b", ARCHS)


def hf(**options) -> StackChoice:
    stacks = load_stacks(catalog_dir())
    stack = next(s for s in stacks if s.id == "hf")
    return StackChoice(stack, **options)


def run_llama(cli, *extra: str):
    return cli("estimate", "--hf-config", LLAMA_1B, *H200_ROW, "--global-batch", "8", "--micro-batch", "8",
               "--seq-len", "2048", *extra)


# -- the catalog -----------------------------------------------------------------------------------


def test_catalog_has_the_four_stacks_each_number_with_a_source():
    stacks = load_stacks(catalog_dir())
    assert tuple(s.id for s in stacks) == STACKS
    for stack in stacks:
        assert stack.runs("data")
        numbers = [f for f in Stack.__dataclass_fields__ if isinstance(getattr(stack, f), (int, float, dict))
                   and not isinstance(getattr(stack, f), bool) and f not in ("sources",)]
        for name in numbers:
            if getattr(stack, name) is not None and name not in ("retrieved",):
                assert stack.sources.get(name), f"{stack.id}.{name} has no source"


def test_hf_runs_data_parallel_and_zero_but_not_tensor_or_pipeline():
    hf_stack = next(s for s in load_stacks(catalog_dir()) if s.id == "hf")
    assert all(hf_stack.runs(p) for p in ("data", "zero1", "zero2", "zero3"))
    assert not any(hf_stack.runs(p) for p in ("tensor", "pipeline", "context", "expert", "sequence"))


def test_an_unknown_field_is_refused_with_its_close_match(broken_catalog):
    folder = broken_catalog("stacks.yaml", "    host_s_per_op:", "    host_s_per_opp:")
    with pytest.raises(CatalogError, match="stacks.yaml.*host_s_per_opp.*did you mean 'host_s_per_op'"):
        load_stacks(folder)


def test_a_number_without_a_source_is_refused(broken_catalog):
    folder = broken_catalog("stacks.yaml", '      attention_fraction: "SDPA', '      attention_fractio: "SDPA')
    with pytest.raises(CatalogError, match="hf.*no source for 'attention_fraction'"):
        load_stacks(folder)


def test_an_eager_stack_without_its_tables_is_refused(broken_catalog):
    folder = broken_catalog("stacks.yaml", "    host_s_per_op: 5.9e-05\n", "")
    with pytest.raises(CatalogError, match="hf.*host_s_per_op.*required for an eager stack"):
        load_stacks(folder)


def test_a_parallelism_the_catalog_does_not_know_is_refused(broken_catalog):
    folder = broken_catalog("stacks.yaml", "parallelism: [data, zero1, zero2, zero3]", "parallelism: [data, zero4]")
    with pytest.raises(CatalogError, match="hf.*parallelism.*'zero4'"):
        load_stacks(folder)


def test_the_catalog_tables_are_the_probe_fits():
    """catalogs/stacks.yaml's saved bytes are what benchmarks/stack_probe.py fitted (saved bf16 + fp32)."""
    probe = yaml.safe_load((ROOT / "benchmarks" / "stack_probe.yaml").read_text())["families"]
    hf_stack = next(s for s in load_stacks(catalog_dir()) if s.id == "hf")
    for family, kind in (("llama", "gated_rmsnorm"), ("gpt2", "gelu_tanh_layernorm"), ("bert", "gelu_layernorm")):
        for mode, probed in (("amp", "amp"), ("bf16", "purebf16")):
            layer = probe[family][probed]["layer"]
            for width, value in hf_stack.saved_bytes_per_token_per_layer[kind][mode].items():
                fitted = sum(layer.get(f"saved.{d}", {}).get(width, 0.0) for d in ("bfloat16", "float32"))
                assert fitted == pytest.approx(value, abs=0.2), (family, mode, width)


def _plain(value):
    """A catalog table (read-only mappings) as plain dicts, to compare with the probe's."""
    return {k: _plain(v) for k, v in value.items()} if hasattr(value, "items") else value


def test_the_compiled_tables_are_the_compile_probe_fits():
    """catalogs/stacks.yaml's compiled_* tables are benchmarks/compile_probe.py's fits, as its
    catalog_tables derives them from benchmarks/compile_probe.yaml, and autocast's bf16 weight copies
    are kept under torch.compile as in eager (the catalog's weight_copy_bytes_per_param)."""
    import importlib.util
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("compile_probe", ROOT / "benchmarks" / "compile_probe.py")
    probe_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe_module)
    probe = yaml.safe_load((ROOT / "benchmarks" / "compile_probe.yaml").read_text())["families"]
    hf_stack = next(s for s in load_stacks(catalog_dir()) if s.id == "hf")
    for name, table in probe_module.catalog_tables(probe).items():
        assert _plain(getattr(hf_stack, name)) == table, name
    for family in probe_module.KINDS:
        copies = probe[family]["amp"]["layer"]["saved.weight_copy.per_param"]["one"]
        assert copies == pytest.approx(hf_stack.weight_copy_bytes_per_param, abs=0.05), family


# -- flags and the request ---------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "message"), [
    ("stack", "hff", "--stack 'hff'; use one of megatron, deepspeed, fsdp, hf"),
    ("master_weights", "fp16", "--master-weights 'fp16'; use one of fp32, bf16"),
    ("compile", "yes", "--compile must be true or false"),
])
def test_the_request_refuses_bad_stack_fields(field, value, message):
    with pytest.raises(InputError, match=message):
        EstimateRequest(params="1B", tokens="1B", **{field: value})


def test_stack_fields_need_the_step_model():
    with pytest.raises(InputError, match="--stack.*architecture"):
        EstimateRequest(params="1B", tokens="1B", stack="hf")


@pytest.mark.parametrize(("extra", "message"), [
    (["--stack", "megatron", "--compile"], "--compile is torch.compile, which --stack megatron does not use"),
    (["--stack", "deepspeed", "--compile"], "--stack fsdp or hf"),
    (["--stack", "hf", "--no-flash-attention"], "--stack hf runs SDPA's flash kernel"),
    (["--stack", "hf", "--recompute", "selective"], "recomputes whole layers"),
    (["--stack", "hf", "--tensor-parallel", "2"], "--stack hf cannot run tensor parallelism"),
    (["--stack", "hf", "--pipeline-parallel", "2"], "--stack hf cannot run pipeline parallelism"),
    (["--stack", "fsdp", "--zero-stage", "1"], "--stack fsdp cannot run ZeRO stage 1"),
    (["--stack", "deepspeed", "--pipeline-parallel", "2", "--virtual-stages", "2"],
     "--stack deepspeed cannot run an interleaved pipeline schedule"),
])
def test_a_layout_or_flag_the_stack_cannot_run_is_one_line_and_exit_2(cli, extra, message):
    result = cli("estimate", "--hf-config", LLAMA_1B, "--gpu", "h200", "--num-gpus", "8", "--global-batch", "64",
                 "--seq-len", "2048", "--tokens", "1e9", *extra)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_eager_stack_is_timed_on_one_device_even_where_it_could_split_it(cli, broken_catalog, monkeypatch):
    folder = broken_catalog("stacks.yaml", "parallelism: [data, zero1, zero2, zero3]",
                            "parallelism: [data, zero1, zero2, zero3, tensor]")
    monkeypatch.setenv("GPUCOST_CATALOG_DIR", str(folder))
    result = cli("estimate", "--hf-config", LLAMA_1B, "--gpu", "h200", "--num-gpus", "8", "--global-batch", "64",
                 "--seq-len", "2048", "--tokens", "1e9", "--stack", "hf", "--tensor-parallel", "2")
    assert result.exit_code == 2 and "--tensor-parallel 2 is not modelled for it" in result.stderr


FSDP_ATTENTION = ("    attention_fraction: {flash2: {ampere: 0.62, hopper: 0.35}, "
                  "flash1: {ampere: 0.325, hopper: 0.19}}\n"
                  "    attention_kernel: flash2\n    allocator_reserve_gb: 1\n    grad_reduce_bytes: 4")
NO_FSDP_ATTENTION = FSDP_ATTENTION.split("\n", 2)[2]


def test_fsdp_and_deepspeed_are_timed_as_the_fused_layer(cli, broken_catalog, monkeypatch):
    """torchtitan and llm-foundry fuse the elementwise work (compile, fused kernels): at a fixed layout
    the step is the fused layer's, as the published FSDP rows of benchmarks/stack_runs.yaml are timed,
    but for the attention kernel, FlashAttention-2 at its own rate (catalogs/stacks.yaml attention_fraction):
    without that table fsdp's compute is megatron's."""
    layout = ["--tensor-parallel", "1", "--pipeline-parallel", "1", "--zero-stage", "3", "--micro-batch", "1",
              "--recompute", "full", "--seq-len", "4096", "--format", "json"]

    def run(stack: str) -> dict:
        return cli("estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1e9",
                   "--stack", stack, *layout).json()

    answers = {s: run(s) for s in ("megatron", "deepspeed", "fsdp")}
    compute = {s: a["time_breakdown_s"]["compute"] for s, a in answers.items()}
    assert compute["megatron"] == compute["deepspeed"] < compute["fsdp"]
    assert any("attention: a fused kernel (FlashAttention) at 35% of the 16-bit dense peak forward and backward "
               "(flash2 on hopper)" in line for line in answers["fsdp"]["assumptions"])
    assert answers["fsdp"]["stack"]["attention_kernel"] == "flash2"
    assert answers["megatron"]["stack"]["attention_kernel"] is None
    monkeypatch.setenv("GPUCOST_CATALOG_DIR", str(broken_catalog("stacks.yaml", FSDP_ATTENTION, NO_FSDP_ATTENTION)))
    assert run("fsdp")["time_breakdown_s"]["compute"] == compute["megatron"]
    # deepspeed reduces in bf16 as the default stack's convention does, but adds every micro-batch's
    # gradients into fp32 ones outside the matmuls (catalogs/stacks.yaml grad_accumulation_bytes_per_param)
    ds, mg = answers["deepspeed"]["time_breakdown_s"], answers["megatron"]["time_breakdown_s"]
    assert ds["data_parallel"] == mg["data_parallel"]
    assert ds["gradient_accumulation"] > 0 and "gradient_accumulation" not in mg
    # fsdp reduces its gradients in fp32 (catalogs/stacks.yaml grad_reduce_bytes 4): its ZeRO-3
    # reduce-scatters carry twice the bytes, so its data-parallel time is longer, its compute the same
    fsdp, megatron = answers["fsdp"]["time_breakdown_s"], answers["megatron"]["time_breakdown_s"]
    assert fsdp["data_parallel"] > megatron["data_parallel"]


def test_deepspeeds_pipeline_runs_1f1b_with_its_send_and_receive_one_after_the_other(cli):
    """DeepSpeed's pipeline engine has one schedule, 1F1B without virtual stages, and each exchange
    between stages is a blocking receive then a blocking send (catalogs/stacks.yaml deepspeed sources:
    deepspeed/runtime/pipe/schedule.py, p2p.py): the search holds it at one chunk per stage, and its
    point-to-point time is twice Megatron's batched send/receive of the same activation."""
    layout = ["--tensor-parallel", "8", "--pipeline-parallel", "4", "--zero-stage", "1", "--micro-batch", "1",
              "--recompute", "full", "--seq-len", "4096", "--global-batch", "256", "--format", "json"]
    answers = {s: cli("estimate", "--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "256", "--tokens", "1e9",
                      "--stack", s, *layout, *(["--virtual-stages", "1"] if s == "megatron" else [])).json()
               for s in ("megatron", "deepspeed")}
    assert answers["deepspeed"]["layout"]["virtual_stages"] == 1
    ds, mg = (answers[s]["time_breakdown_s"]["pipeline_p2p"] for s in ("deepspeed", "megatron"))
    assert ds == pytest.approx(2 * mg, rel=1e-9) and mg > 0


def test_the_default_stack_is_megatron_and_says_so(cli):
    default = run_llama(cli, "--format", "json").json()
    named = run_llama(cli, "--stack", "megatron", "--format", "json").json()
    assert default["step_time_s"] == named["step_time_s"]
    assert default["stack"]["id"] == "megatron" and default["stack"]["engine"] == "fused"
    assert any("stack: megatron" in a and "the default" in a for a in default["assumptions"])


def test_compare_takes_the_stack_flags(cli):
    result = cli("compare", "--hf-config", LLAMA_1B, "--gpu", "h200,h100", "--num-gpus", "1", "--global-batch", "8",
                 "--micro-batch", "8", "--seq-len", "2048", "--tokens", "1e9", "--stack", "hf", "--master-weights",
                 "bf16", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert len(result.json()["rows"]) == 2


def test_hf_on_several_devices_runs_data_parallel(cli):
    result = cli("estimate", "--hf-config", LLAMA_1B, "--gpu", "h200", "--num-gpus", "8", "--global-batch", "64",
                 "--micro-batch", "8", "--seq-len", "2048", "--tokens", "1e9", "--stack", "hf", "--format", "json")
    layout = result.json()["layout"]
    assert (layout["tensor_parallel"], layout["pipeline_parallel"], layout["data_parallel"]) == (1, 1, 8)


def test_gpucost_stacks_lists_every_stack_within_120_columns(cli):
    table = cli("stacks")
    assert table.exit_code == 0
    assert all(len(line) <= 120 for line in table.stdout.splitlines())
    data = cli("stacks", "--format", "json").json()
    assert data["schema_version"] == 1 and [s["id"] for s in data["stacks"]] == list(STACKS)


# -- memory ----------------------------------------------------------------------------------------


def test_memory_parts_add_up_and_name_what_dominates():
    memory = stack_memory(llama_1b(), hf(), seq_len=2048, micro_batch=8)
    assert memory.total_bytes == pytest.approx(sum(memory.parts().values()))
    assert memory.phase == "the loss backward" and memory.gradients_bytes == 0  # set_to_none: none held yet
    assert memory.dominant == "activations"
    assert "activations dominate" in memory.describe()


def test_master_weights_bf16_halve_the_weights_and_states():
    arch = llama_1b()
    fp32 = stack_memory(arch, hf(), seq_len=2048, micro_batch=8)
    bf16 = stack_memory(arch, hf(master_weights="bf16"), seq_len=2048, micro_batch=8)
    assert bf16.weights_bytes == pytest.approx(fp32.weights_bytes / 2)
    assert bf16.optimizer_bytes == pytest.approx(fp32.optimizer_bytes / 2)
    assert bf16.weight_copies_bytes == 0 < fp32.weight_copies_bytes  # no autocast copies in pure bf16
    states = bf16.weights_bytes + bf16.optimizer_bytes + 2 * 1_235_814_400  # + bf16 gradients = 8 B per parameter
    assert states / 1_235_814_400 == pytest.approx(8.0)


def test_frozen_parameters_hold_no_gradients_or_optimizer_states():
    arch = llama_1b()
    full = stack_memory(arch, hf(), seq_len=2048, micro_batch=8)
    frozen = stack_memory(arch, hf(), seq_len=2048, micro_batch=8, trainable_params=0)
    assert frozen.optimizer_bytes == 0 and frozen.weights_bytes == full.weights_bytes
    with pytest.raises(InputError, match="trainable parameters"):
        stack_memory(arch, hf(), seq_len=2048, micro_batch=8, trainable_params=-1)


def test_checkpointing_and_compile_keep_less_than_eager():
    arch = llama_1b()
    eager = stack_memory(arch, hf(), seq_len=2048, micro_batch=8)
    ckpt = stack_memory(arch, hf(), seq_len=2048, micro_batch=8, recompute="full")
    compiled = stack_memory(arch, hf(compile=True), seq_len=2048, micro_batch=8)
    assert ckpt.activations_bytes < compiled.activations_bytes < eager.activations_bytes
    assert ckpt.dominant == "loss logits"  # 12 B per logit of a 128K vocabulary outweigh the layer inputs


def test_gradient_accumulation_holds_the_gradients_at_the_loss_backward():
    one = stack_memory(llama_1b(), hf(), seq_len=2048, micro_batch=8)
    many = stack_memory(llama_1b(), hf(), seq_len=2048, micro_batch=8, num_micro_batches=4)
    assert many.gradients_bytes == pytest.approx(1_235_814_400 * 4) and many.total_bytes > one.total_bytes


def test_layer_kinds_follow_the_architecture():
    assert layer_kind(llama_1b()) == "gated_rmsnorm"
    assert layer_kind(load_architecture("gpt2-small", ARCHS)) == "gelu_tanh_layernorm"
    assert layer_kind(load_architecture("bert-base", ARCHS)) == "gelu_layernorm"


# -- time ------------------------------------------------------------------------------------------


def test_a_small_model_is_launch_bound_and_a_large_one_device_bound(cli):
    small = cli("estimate", "--hf-config", GPT2, *H200_ROW, "--global-batch", "8", "--micro-batch", "8",
                "--seq-len", "1024", "--stack", "hf", "--format", "json").json()["stack"]
    large = run_llama(cli, "--stack", "hf", "--format", "json").json()["stack"]
    assert small["bound"].startswith("host") and small["host_s"] > small["device_s"]
    assert large["bound"] == "device" and large["device_s"] > 2 * large["host_s"]


def test_the_attention_kernel_runs_at_its_generations_share_of_the_16_bit_peak():
    """FlashAttention-2 at 62% of an A100's 312 TFLOP/s and 35% of an H100's 989, FlashAttention-1 at 32.5%
    of an A100's (catalogs/stacks.yaml attention_fraction); a generation the table lacks takes the kernel's
    lowest share; a float8 run's attention still runs in bf16; megatron's table is empty (its fitted layer)."""
    from estimator.catalog.core import load_catalog
    from estimator.timing.stacks import attention_rate

    catalog = load_catalog(catalog_dir())
    stacks = {s.id: s for s in load_stacks(catalog_dir())}
    a100, h100, b200 = (catalog.accelerator(name) for name in ("a100-sxm-80gb", "h100-sxm", "b200"))
    assert attention_rate(StackChoice(stacks["fsdp"]), a100)[:2] == pytest.approx((0.62 * 312e12, 0.62))
    assert attention_rate(StackChoice(stacks["fsdp"], attention_kernel="flash1"), a100)[:2] == pytest.approx(
        (0.325 * 312e12, 0.325))
    assert attention_rate(StackChoice(stacks["hf"]), h100)[:2] == pytest.approx((0.35 * 989.4e12, 0.35))
    rate, share, basis = attention_rate(StackChoice(stacks["fsdp"]), b200)
    assert share == 0.35 and rate == pytest.approx(0.35 * b200.peak_for("bf16") * 1e12) and "lowest" in basis
    assert attention_rate(StackChoice(stacks["megatron"]), h100) is None


@pytest.mark.parametrize("extra, message", [
    (["--stack", "megatron", "--attention-kernel", "flash1"],
     "--attention-kernel chooses the attention kernel of --stack fsdp or hf; --stack megatron is the step model's "
     "fitted layer, attention included: drop --attention-kernel"),
    (["--stack", "fsdp", "--attention-kernel", "flsh1"],
     "--attention-kernel 'flsh1' is not one --stack fsdp runs (did you mean 'flash1'?); choose flash2 or flash1"),
    (["--stack", "hf", "--attention-kernel", "flash1"], "--attention-kernel 'flash1' is not one --stack hf runs"),
])
def test_an_attention_kernel_the_stack_does_not_run_is_one_error_line(cli, extra, message):
    result = cli("estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1e9", *extra)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_the_older_kernel_makes_a_long_sequence_slower(cli):
    """llm-foundry's MPT-1b at 65,536 tokens on 8 A100 80GB (benchmarks/stack_runs.yaml
    llmfoundry-mpt-1b-a100-80gb-8-s65536: 43.1 s per step with --attn_impl triton): attention dominates,
    and FlashAttention-1's rate makes the step nearly twice FlashAttention-2's."""
    args = ["estimate", "--hf-config", str(ROOT / "benchmarks" / "configs" / "mpt-1b-s65536.json"),
            "--gpu", "a100-sxm-80gb", "--num-gpus", "8", "--tensor-parallel", "1", "--pipeline-parallel", "1",
            "--zero-stage", "3", "--global-batch", "16", "--micro-batch", "1", "--seq-len", "65536",
            "--recompute", "full", "--tokens", "1e9", "--stack", "fsdp", "--format", "json"]
    flash2 = cli(*args).json()["step_time_s"]
    flash1 = cli(*args, "--attention-kernel", "flash1").json()
    assert 1.5 * flash2 < flash1["step_time_s"] < 2.0 * flash2
    assert flash1["stack"]["attention_kernel"] == "flash1"


def test_an_attention_share_above_one_is_refused(broken_catalog):
    folder = broken_catalog("stacks.yaml", FSDP_ATTENTION, FSDP_ATTENTION.replace("hopper: 0.35", "hopper: 1.5"))
    with pytest.raises(CatalogError, match="fsdp.*attention_fraction.*flash2.hopper must be a fraction in \\(0, 1\\]"):
        load_stacks(folder)


def test_a_default_kernel_outside_the_table_is_refused(broken_catalog):
    folder = broken_catalog("stacks.yaml", FSDP_ATTENTION, FSDP_ATTENTION.replace("attention_kernel: flash2",
                                                                                  "attention_kernel: flash3"))
    with pytest.raises(CatalogError, match="fsdp.*attention_kernel.*must name one of the kernels"):
        load_stacks(folder)


def test_a_run_with_a_kernel_its_stack_lacks_is_refused(tmp_path):
    runs = tmp_path / "stack_runs.yaml"
    runs.write_text("schema_version: 1\nstack_runs:\n  - {id: r, stack: fsdp, architecture: llama-3.2-1b, "
                    "accelerator: h200, num_gpus: 1, seq_len: 2048, micro_batch: 1, global_batch: 1, step_time_s: 1, "
                    "split: held_out, source: s, retrieved: 2026-12-05, attention_kernel: flash9}\n")
    (tmp_path / "architectures").symlink_to(ARCHS)
    with pytest.raises(CatalogError, match="stack_runs.yaml.*attention_kernel.*fsdp runs flash2, flash1"):
        load_stack_runs(runs, load_stacks(catalog_dir()))


def test_the_device_runs_what_the_host_issued_in_order():
    """A two-stage flow line (host issues, device runs, one order): max(host, device) when one side is the
    slower in every phase; the host's forward plus the device's rest when the host is the slower in the
    forward and the device after it."""
    from estimator.timing.stacks import StackTime

    def timed(device, host, device_phases, host_phases):
        return StackTime(parts_s={}, kernels=0, device_s=device, host_s=host, forward_s=0.0,
                         host_s_per_layer_kernel=0.0,
                         device_phases_s=device_phases, host_phases_s=host_phases)

    device_bound = timed(10.0, 6.0, (3.0, 2.0), (2.0, 0.5))
    assert device_bound.compute_s == 10.0 and device_bound.bound == "device"
    host_bound = timed(6.0, 10.0, (2.0, 1.0), (3.0, 0.5))
    assert host_bound.compute_s == 10.0 and host_bound.bound.startswith("host (kernel")
    # forward: the host 4 s against the device's 2; after it the device has 8 s to run and the host 5 to issue
    mixed = timed(10.0, 9.0, (2.0, 3.0), (4.0, 0.5))
    assert mixed.compute_s == pytest.approx(4.0 + 8.0) and mixed.bound == "host in the forward, then device"
    assert mixed.in_order_s(device_extra=1.0) == pytest.approx(4.0 + 9.0)


def test_a_step_near_the_balance_takes_longer_than_either_side(cli):
    """GPT-2 at batch 16: the host issues the forward more slowly than the device runs it, the device then
    runs the loss and the backward (../shared/measurements: GPT-2 at batch 8 is launch-bound)."""
    got = cli("estimate", "--hf-config", GPT2, *H200_ROW, "--global-batch", "16", "--micro-batch", "16",
              "--seq-len", "1024", "--stack", "hf", "--format", "json").json()
    stack = got["stack"]
    assert stack["bound"] == "host in the forward, then device"
    assert got["step_time_s"] > max(stack["host_s"], stack["device_s"]) * 1.02


def test_the_host_time_is_each_parts_kernels_at_its_probed_weight(cli):
    """host_s = host_s_per_op x (layers x a layer's kernels x its weight + the kernels outside x theirs),
    the weights of the layer kind, mode and recomputation (benchmarks/host_probe.py)."""
    hf_stack = next(s for s in load_stacks(catalog_dir()) if s.id == "hf")
    arch = load_architecture("gpt2-small", ARCHS)
    for recompute, extra in (("none", ()), ("full", ("--recompute", "full"))):
        for mode, flags in (("amp", ()), ("bf16", ("--master-weights", "bf16"))):
            got = cli("estimate", "--hf-config", GPT2, *H200_ROW, "--global-batch", "8", "--micro-batch", "8",
                      "--seq-len", "1024", "--stack", "hf", *extra, *flags, "--format", "json").json()["stack"]
            layer = hf_stack.kernels_per_layer["gelu_tanh_layernorm"][mode]
            outside = hf_stack.kernels_outside["gelu_tanh_layernorm"][mode]
            weight = hf_stack.host_op_weight["gelu_tanh_layernorm"][mode][recompute]
            drop = hf_stack.dropout["gelu_tanh_layernorm"]["sites_per_layer"] * (3 if recompute == "full" else 2)
            per_layer = layer["forward"] * (2 if recompute == "full" else 1) + layer["backward"] + drop
            expected = hf_stack.host_s_per_op * (arch.num_layers * per_layer * weight["layer"]
                                                 + (outside["forward"] + outside["backward"]) * weight["outside"])
            assert got["host_s"] == pytest.approx(expected, rel=1e-9), (mode, recompute)


def test_the_host_weights_are_the_probes():
    """catalogs/stacks.yaml's host_op_weight is what benchmarks/host_probe.py measured (host_probe.yaml),
    and checkpointing costs the host more per op than the same layer without it."""
    probe = yaml.safe_load((ROOT / "benchmarks" / "host_probe.yaml").read_text())["weights"]
    hf_stack = next(s for s in load_stacks(catalog_dir()) if s.id == "hf")
    for kind, modes in hf_stack.host_op_weight.items():
        for mode, recomputes in modes.items():
            for recompute, weight in recomputes.items():
                measured = probe[kind][mode][recompute]
                expected = {part: round(measured[part], 2) for part in ("layer", "outside")}
                assert weight == expected, (kind, mode, recompute)
            assert recomputes["full"]["layer"] > recomputes["none"]["layer"], (kind, mode)


def test_a_host_weight_table_without_its_recompute_entry_is_refused(broken_catalog):
    folder = broken_catalog("stacks.yaml", "gated_rmsnorm: {amp: {none:", "gated_rmsnorm: {amp: {nonee:")
    with pytest.raises(CatalogError, match="hf.*host_op_weight.*gated_rmsnorm.amp.none must give"):
        load_stacks(folder)


def test_compile_launches_fewer_kernels_and_takes_less_time(cli):
    """The compiled step launches the probed kernels (benchmarks/compile_probe.py: every layer's extern and
    fused kernels, and those outside the layers), about half of eager's, and takes less time."""
    eager = run_llama(cli, "--stack", "hf", "--format", "json").json()
    compiled = run_llama(cli, "--stack", "hf", "--compile", "--format", "json").json()
    hf_stack = next(s for s in load_stacks(catalog_dir()) if s.id == "hf")
    layer = hf_stack.compiled_kernels_per_layer["gated_rmsnorm"]["amp"]
    outside = hf_stack.compiled_kernels_outside["gated_rmsnorm"]["amp"]
    expected = llama_1b().num_layers * (layer["forward"] + layer["backward"]) + outside["forward"] + outside["backward"]
    assert compiled["stack"]["kernels_per_micro_batch"] == pytest.approx(expected)
    assert compiled["stack"]["kernels_per_micro_batch"] < eager["stack"]["kernels_per_micro_batch"] / 1.5
    assert compiled["step_time_s"] < eager["step_time_s"]


def test_recompute_adds_a_forward(cli):
    none = run_llama(cli, "--stack", "hf", "--recompute", "none", "--format", "json").json()["step_time_s"]
    full = run_llama(cli, "--stack", "hf", "--recompute", "full", "--format", "json").json()["step_time_s"]
    assert 1.1 * none < full < 4 / 3 * none  # one more forward: at most a third more


# -- golden: real H200 training steps ----------------------------------------------------------------


def test_the_visible_h200_rows_are_within_15_percent_on_time_and_memory():
    """../shared/measurements/h200-2026-12/README.md, Real training steps table (hf_train.py and
    hf_variants.py: transformers, one H200, amp / purebf16 / ckpt / compile): each row estimated
    with the issue's command (catalogs/stack_runs.yaml)."""
    from estimator.validation.stack_runs import validate_stacks

    result = validate_stacks()
    rows = {r.id: r for r in result.rows if r.stack == "hf"}  # the published rows of other stacks: test_scale.py
    assert {r.split for r in rows.values()} == {"train", "held_out"}
    assert rows["h200-llama1b-amp-b8"].measured_step_time_s == 0.34579  # the README's figures, as read
    assert rows["h200-gpt2-amp-b8"].measured_memory_gb == 13.61
    for row in rows.values():
        assert abs(row.time_error) <= 0.15, (row.id, row.time_error)
        assert abs(row.memory_error) <= 0.15, (row.id, row.memory_error)
    # memory is counted, not fitted: within 3% where the CUDA run's saved tensors were probed (eager);
    # the compiled tables come from Inductor's CPU backend and leave 2 GB of the 55 GB compiled row
    # unaccounted for (docs/stacks.md), within 5%
    assert all(abs(r.memory_error) <= (0.05 if "compile" in r.id else 0.03) for r in rows.values())


def test_the_rows_file_is_checked(broken_catalog):
    folder = broken_catalog("stack_runs.yaml", "    split: train\n", "    split: both\n")
    with pytest.raises(CatalogError, match="stack_runs.yaml.*split"):
        load_stack_runs(folder / "stack_runs.yaml", load_stacks(folder))


def test_the_fitted_constants_are_the_fit_on_the_train_rows():
    """benchmarks/stack_single_gpu.py --fit, on the train rows only, gives the catalog's values."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stack_single_gpu", ROOT / "benchmarks" / "stack_single_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fitted = module.fit()
    hf_stack = next(s for s in load_stacks(catalog_dir()) if s.id == "hf")
    assert fitted["matmul_fraction_of_mamf"] == hf_stack.matmul_fraction_of_mamf
    assert fitted["host_s_per_op"] == pytest.approx(hf_stack.host_s_per_op, rel=0.02)
    train = {r.id for r in load_stack_runs(catalog_dir() / "stack_runs.yaml", load_stacks(catalog_dir()))
             if r.split == "train"}
    assert set(fitted["train_rows"]) == train


def test_validate_prints_each_stack_train_and_held_out_apart(cli):
    out = cli("validate").stdout
    assert "hf train, one device: step time 3 of 3 within 15%" in out
    assert "hf held-out, one device: step time" in out and "peak memory" in out
    assert "megatron held-out, at scale: step time" in out
    data = cli("validate", "--format", "json").json()["stacks"]
    assert {s["split"] for s in data["summaries"]} == {"train", "held_out"}
    assert json.dumps(data)  # strict JSON: no nan or inf


def test_fsdp_float8_pays_torchaos_scaling_casts_around_each_linear(cli, broken_catalog, monkeypatch):
    """torchtitan's Float8 is torchao's dynamic tensorwise scaling: per linear the input and the output
    gradient at 4 B per element and the weight at 8 B per parameter (catalogs/stacks.yaml fsdp
    fp8_cast_bytes, from torchao's float8 roofline); Megatron's Transformer Engine casts are in its
    fitted layer, so --stack megatron adds none."""
    from estimator.model.memory import layer_linears
    from estimator.timing.step import fp8_cast_seconds

    llama = load_architecture("llama-3.1-8b", ROOT / "catalogs" / "architectures")
    h, kv, f = 4096, 1024, 14336
    assert [(k, n) for _, k, n, _ in layer_linears(llama)] == [(h, h), (h, kv), (h, kv), (h, h), (h, f), (h, f), (f, h)]
    casts = {"per_activation_element": 4, "per_weight_param": 8}
    inputs, outputs = 6 * h + f, 3 * h + 2 * kv + 2 * f
    weights = 2 * h * h + 2 * h * kv + 3 * h * f
    assert fp8_cast_seconds(llama, casts, 1000, False, 1e12) == pytest.approx(
        (1000 * (inputs + outputs) * 4 + weights * 8) / 1e12)
    layout = ["--tensor-parallel", "1", "--pipeline-parallel", "1", "--zero-stage", "3", "--micro-batch", "1",
              "--recompute", "full", "--seq-len", "4096", "--format", "json"]

    def compute(stack: str, precision: str) -> float:
        answer = cli("estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1e9",
                     "--stack", stack, "--precision", precision, *layout).json()
        return answer["time_breakdown_s"]["compute"]

    # with its attention timed as the fused layer's (no attention_fraction), fsdp differs from megatron
    # by the casts alone
    monkeypatch.setenv("GPUCOST_CATALOG_DIR", str(broken_catalog("stacks.yaml", FSDP_ATTENTION, NO_FSDP_ATTENTION)))
    assert compute("fsdp", "fp8") > compute("megatron", "fp8")
    assert compute("fsdp", "bf16") == pytest.approx(compute("megatron", "bf16"))
