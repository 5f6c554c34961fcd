"""`gpucost profile --torch-model SPEC` (profiler/torch_model/step.py, profiler/torch_model/builtin.py) and the
calibration file's `torch_model` section (estimator/records/torch_model.py).

The built-in models have their published parameter counts and FlopCounterMode's FLOPs equal the
hand counts; a short real profile of builtin:mnist-mlp on the CPU writes a valid section that the
estimator reads back; every SPEC error and every record error is one exact line; the section is
merged into an existing calibration file of the same device; Ctrl-C keeps what was timed. Nothing
asserts a speed: the profile runs under a test-only budget of a fraction of a second."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from estimator.records.calibration import partial_path, read_calibration, validate_calibration, write_calibration  # noqa: E402
from estimator.errors import CatalogError, GpucostError, InputError  # noqa: E402
from estimator.records.torch_model import (TorchModelRecord, measured_samples_per_s, merge_torch_model,  # noqa: E402
    validate_torch_model)
from profiler.torch_model import step as tm  # noqa: E402
from profiler.torch_model.builtin import ResNet50, mnist_mlp, mnist_mlp_module, resnet_50  # noqa: E402
from profiler.device import describe_cpu  # noqa: E402
from profiler.run import Budget  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
MLP_MACS = 784 * 500 + 500 * 500 + 500 * 10  # multiply-adds per image
TINY = {"cpu": Budget(warmup_s=0.02, budget_s=0.1, min_iters=3, max_iters=200),
        "gpu": Budget(warmup_s=0.02, budget_s=0.1, min_iters=3, max_iters=200)}


@pytest.fixture
def tiny_budget(monkeypatch):
    monkeypatch.setattr(tm, "DEFAULT_BUDGET", TINY)


@pytest.fixture
def in_tmp(cli, monkeypatch, tmp_path):
    """The `cli` runner in an empty folder, with the test-only budget."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tm, "DEFAULT_BUDGET", TINY)
    return cli


# -- the built-in models -------------------------------------------------------------------------


def test_mnist_mlp_has_648010_parameters():
    model = mnist_mlp_module()
    assert sum(p.numel() for p in model.parameters()) == 784 * 500 + 500 + 500 * 500 + 500 + 500 * 10 + 10 == 648_010
    assert [type(m).__name__ for m in model] == ["Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]


def test_resnet50_has_torchvisions_25557032_parameters_on_the_meta_device():
    with torch.device("meta"):
        model = ResNet50()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    # torchvision's module names, so its state dicts load: conv1, bn1, layer1..layer4, fc
    assert {name.split(".")[0] for name, _ in model.named_parameters()} == {
        "conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}
    assert len(model.layer1) == 3 and len(model.layer2) == 4 and len(model.layer3) == 6 and len(model.layer4) == 3


def test_mlp_flops_counted_by_flopcountermode_equal_the_hand_count():
    model = mnist_mlp_module()
    x = torch.rand(64, 784, requires_grad=True)  # as inside a network: the input's gradient is computed
    y = torch.randint(0, 10, (64,))
    with FlopCounterMode(display=False) as forward:
        loss = nn.functional.cross_entropy(model(x), y)
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    assert forward.get_total_flops() == 64 * 2 * MLP_MACS == 64 * 1_294_000
    assert forward.get_total_flops() + backward.get_total_flops() == 3 * 64 * 2 * MLP_MACS


def test_profile_counts_the_mlp_training_flops_of_a_batch_that_needs_no_gradient():
    """The profiled batch (data) does not require grad, so the first layer's backward computes the
    weight gradient only: training = 3 x forward - 2 x 784 x 500 per sample."""
    work = tm.build_workload(tm.resolve_spec("builtin:mnist-mlp"), CPU)
    forward, training, how = tm.count_flops(tm.TorchModelStep(work, CPU, "builtin:mnist-mlp"))
    assert how == "counted on sub-batches of 2 and 4 samples, scaled to the batch"
    assert work.batch_size == 64 and work.optimizer_name == "SGD(lr=0.01, momentum=0.9)"
    assert forward == 64 * 1_294_000
    assert training == 64 * (3 * 1_294_000 - 2 * 784 * 500) == 64 * 3_098_000
    assert all(p.grad is None for p in work.model.parameters())  # the counting step leaves no gradient behind


def test_resnet50_forward_flops_at_224_are_torchvisions_4_09_gmacs_times_two():
    with torch.device("meta"):
        model = ResNet50()
        x = torch.empty(1, 3, 224, 224)
    with FlopCounterMode(display=False) as counter:
        model(x)
    total = counter.get_total_flops()
    assert abs(total / 8.18e9 - 1) < 0.01
    assert total == 8_178_368_512  # 4,089,184,256 multiply-adds x 2
    # only convolutions and the fc layer are counted (batch norm, ReLU, pooling, residual adds are not)
    ops = {str(op) for op in counter.get_flop_counts()["Global"]}
    assert ops == {"aten.convolution", "aten.addmm"}
    assert counter.get_flop_counts()["Global"][torch.ops.aten.addmm] == 2 * 2048 * 1000


def test_builtin_callables_return_a_model_batch_and_sgd():
    small = resnet_50(batch_size=2)
    assert small["batch"][0].shape == (2, 3, 224, 224) and small["batch"][1].shape == (2,)
    assert type(small["optimizer"]).__name__ == "SGD" and small["optimizer"].param_groups[0]["momentum"] == 0.9
    assert tm.describe_optimizer(small["optimizer"]) == "SGD(lr=0.1, momentum=0.9, weight_decay=0.0001)"
    mlp = mnist_mlp()
    assert mlp["batch"][0].shape == (64, 784) and mlp["batch"][1].dtype == torch.int64


def test_resnet50_is_channels_last_on_cuda_nchw_on_a_cpu_and_the_option_chooses():
    cpu = resnet_50(batch_size=2)
    assert cpu["batch"][0].is_contiguous() and cpu["model"].conv1.weight.is_contiguous()
    assert cpu["notes"] == ["memory format: NCHW (the default on a CPU; --memory-format channels_last lays it out "
                            "NHWC)"]
    nhwc = resnet_50(batch_size=2, memory_format="channels_last")
    assert nhwc["batch"][0].is_contiguous(memory_format=torch.channels_last)
    assert nhwc["model"].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc["notes"] == ["memory format: channels_last (NHWC) (--memory-format)"]
    # the sub-batches the FLOP count runs on keep the layout
    work = tm.build_workload(tm.resolve_spec("builtin:resnet-50"), CPU, batch_size=4, memory_format="channels_last")
    args, _, _ = tm.sub_batch(work, 2)
    assert args[0].shape[0] == 2 and args[0].is_contiguous(memory_format=torch.channels_last)
    assert work.notes == ("memory format: channels_last (NHWC) (--memory-format)",)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resnet50_defaults_to_channels_last_on_cuda():
    built = resnet_50(batch_size=2, device="cuda")
    assert built["batch"][0].is_contiguous(memory_format=torch.channels_last)
    assert built["notes"][0].startswith("memory format: channels_last (NHWC) (the default on CUDA")


def test_memory_format_needs_a_callable_that_takes_it(in_tmp, tmp_path):
    (tmp_path / "models.py").write_text(MODELS_FILE)
    result = in_tmp("profile", "--device", "cpu", "--torch-model", "models.py:out_of_memory", "--memory-format",
                    "nchw", "--quiet")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: --torch-model models.py:out_of_memory: --memory-format needs a callable "
                                     "with a memory_format parameter; lay out the model and batch in the callable "
                                     "instead")
    result = in_tmp("profile", "--device", "cpu", "--torch-model", "builtin:resnet-50", "--memory-format", "nhwc")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: unknown --memory-format 'nhwc'; use nchw or channels_last"
    result = in_tmp("profile", "--device", "cpu", "--memory-format", "nchw")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --memory-format applies to --torch-model (the layout its callable builds in)"


# -- a real profile ------------------------------------------------------------------------------


def test_profile_builtin_mnist_mlp_on_the_cpu_writes_a_valid_torch_model_section(in_tmp):
    result = in_tmp("profile", "--torch-model", "builtin:mnist-mlp", "--device", "cpu", "--output", "cal.yaml",
                    "--format", "json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    record = read_calibration("cal.yaml")
    assert record == result.json()
    section = record["torch_model"]
    assert section["id"] == "mnist-mlp" and section["spec"] == "builtin:mnist-mlp"
    assert section["params"] == 648_010 and section["batch_size"] == 64
    assert section["flops_per_sample"] == 3_098_000 and section["forward_flops_per_sample"] == 1_294_000
    assert section["optimizer"] == "SGD(lr=0.01, momentum=0.9)" and section["loss"] == "cross_entropy"
    assert section["partial"] is False and section["command"] == record["command"]
    assert record["command"] == "gpucost profile --device cpu --torch-model builtin:mnist-mlp --output cal.yaml " \
                                "--format json --quiet"
    fp32 = section["results"]["fp32"]
    assert fp32["iterations"] >= 3 and fp32["worst_tflops"] <= fp32["median_tflops"] <= fp32["best_tflops"]
    assert fp32["median_samples_per_s"] == pytest.approx(fp32["median_tflops"] * 1e12 / 3_098_000, rel=1e-4)
    assert fp32["samples_per_s"] <= fp32["best_tflops"] * 1e12 / 3_098_000 * 1.0001
    segments = fp32["segment_samples_per_s"]
    assert len(segments) == min(5, fp32["iterations"]) and min(segments) <= fp32["samples_per_s"] <= max(segments)
    assert section["results"]["bf16"]["skipped"].startswith("not measured by default on a CPU")
    assert record["matmul"] == {} and record["mlp"] == {}
    assert record["bandwidth"]["skipped"] == tm.TORCH_MODEL_ONLY
    rate, info = measured_samples_per_s(record, "mnist-mlp", "fp32")
    assert rate == fp32["samples_per_s"] and info["median_samples_per_s"] == fp32["median_samples_per_s"]
    assert info["band_samples_per_s"][0] <= rate <= info["band_samples_per_s"][1]
    assert info["source"].startswith("calibration: torch_model mnist-mlp fp32 (builtin:mnist-mlp; batch 64, "
                                     "SGD(lr=0.01, momentum=0.9); ")
    assert measured_samples_per_s(record, "mnist-mlp", "bf16") is None  # skipped
    assert measured_samples_per_s(record, "resnet-50", "fp32") is None  # another model
    # the default precision (bf16) was not measured: the error names the dtype that was
    refused = in_tmp("estimate", "--calibration", "cal.yaml", "--model", "mnist-mlp", "--samples", "60000")
    assert refused.exit_code != 0
    assert "has no bf16 measurement (it has: fp32); choose --precision" in refused.stderr


def test_profile_table_output_and_progress(in_tmp):
    result = in_tmp("profile", "--torch-model", "builtin:mnist-mlp", "--device", "cpu", "--dtype", "fp32")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mnist-mlp (builtin:mnist-mlp) on ")
    assert lines[1] == "648,010 parameters; batch 64; SGD(lr=0.01, momentum=0.9); loss cross_entropy"
    assert lines[2] == ("FLOPs per sample (FlopCounterMode): forward 1.294e+06, training (forward + backward) "
                        "3.098e+06; the optimizer's update is not counted")
    assert any(line.startswith("fp32 ") for line in lines)
    assert "Profiling builtin:mnist-mlp's training step (fp32) on " in result.stderr
    assert result.stderr.rstrip().endswith("Wrote calibration to gpucost-calibration.yaml")
    assert "torch_model" in read_calibration("gpucost-calibration.yaml")


def test_a_user_callable_from_a_file_with_a_dict_loss_fn_and_optimizer_factory(in_tmp, tmp_path):
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def regression(device=None, batch_size=16):
            model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
            batch = (torch.randn(batch_size, 8), torch.randn(batch_size, 1))
            return {"model": model, "batch": batch, "id": "tiny-regressor",
                    "loss_fn": nn.functional.l1_loss,
                    "optimizer": lambda params: torch.optim.SGD(params, lr=0.1)}

        def default_adamw():
            return nn.Linear(4, 3), (torch.randn(5, 4), torch.randint(0, 3, (5,)))
        """))
    result = in_tmp("profile", "--torch-model", "mymodels.py:regression", "--micro-batch", "8", "--output",
                    "cal.yaml", "--format", "json", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    section = result.json()["torch_model"]
    assert section["id"] == "tiny-regressor" and section["batch_size"] == 8 and section["loss"] == "l1_loss"
    assert section["optimizer"] == "SGD(lr=0.1)" and section["params"] == 8 * 32 + 32 + 32 + 1
    assert section["forward_flops_per_sample"] == 2 * (8 * 32 + 32)
    assert "--torch-model mymodels.py:regression --micro-batch 8" in result.json()["command"]
    # module:callable from the current directory; AdamW by default
    result = in_tmp("profile", "--torch-model", "mymodels:default_adamw", "--output", "cal.yaml", "--format",
                    "json", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    section = result.json()["torch_model"]
    assert section["id"] == "default_adamw" and section["batch_size"] == 5
    assert section["optimizer"] == "AdamW(lr=0.001, betas=(0.9, 0.999), weight_decay=0.01)"
    assert section["loss"] == "cross_entropy"


def test_a_model_that_computes_its_own_loss_from_a_dict_batch(tiny_budget):
    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, features, labels):
            return {"loss": nn.functional.cross_entropy(self.linear(features), labels)}

    def build():
        return WithLoss(), {"features": torch.randn(6, 4), "labels": torch.randint(0, 2, (6,))}

    resolved = tm.Resolved("test:build", build, "build")
    section = tm.measure_torch_model(resolved, device=CPU)
    assert section["batch_size"] == 6 and section["loss"] == "the model's own loss"
    assert section["forward_flops_per_sample"] == 2 * 4 * 2
    validate_torch_model(section)


def test_bf16_under_autocast_on_the_cpu_when_asked_for(tiny_budget):
    section = tm.measure_torch_model("builtin:mnist-mlp", device=CPU, dtypes=["fp32", "bf16", "fp8"])
    assert "median_tflops" in section["results"]["fp32"] and "median_tflops" in section["results"]["bf16"]
    assert section["results"]["fp8"]["skipped"].startswith("not measured: an fp8 training step")
    assert validate_torch_model(section) == section


# -- counting at the training batch without a second graph -------------------------------------------


class TinyAttention(nn.Module):
    """A small model with every kind of op FlopCounterMode counts: convolution, matmul, attention."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.norm = nn.BatchNorm1d(8)
        self.qkv = nn.Linear(8, 24)
        self.out = nn.Linear(8, 3)
        self.seen: list[int] = []  # the batch of every forward

    def forward(self, x):  # x: (batch, 4 channels, 16 positions)
        self.seen.append(int(x.shape[0]))
        h = self.norm(self.conv(x)).transpose(1, 2)  # (batch, 16, 8)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        h = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(h.mean(dim=1))


def _full_batch_count(model, x, y):
    with FlopCounterMode(display=False) as forward:
        loss = nn.functional.cross_entropy(model(x), y)
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    model.zero_grad(set_to_none=True)
    return forward.get_total_flops(), forward.get_total_flops() + backward.get_total_flops()


@pytest.mark.parametrize("batch", [5, 8, 24])
def test_flops_at_batch_b_are_b_times_those_of_one_sample_counted_without_running_batch_b(batch):
    torch.manual_seed(0)
    model = TinyAttention()
    x, y = torch.randn(batch, 4, 16), torch.randint(0, 3, (batch,))
    one = _full_batch_count(copy.deepcopy(model), x[:2], y[:2])  # 2 samples: batch norm needs more than one
    whole = _full_batch_count(copy.deepcopy(model), x, y)
    work = tm.build_workload(tm.Resolved("test:tiny", lambda: (model, (x, y)), "tiny"), CPU)
    forward, training, how = tm.count_flops(tm.TorchModelStep(work, CPU, "test:tiny"))
    assert how == "counted on sub-batches of 2 and 4 samples, scaled to the batch"
    assert (forward, training) == (one[0] * batch / 2, one[1] * batch / 2) == whole
    assert max(model.seen) == 4  # the count never built a graph of the whole batch
    assert all(p.grad is None for p in model.parameters())


def test_a_hugging_face_llamas_flops_scale_from_the_sub_batches_to_the_full_count():
    """benchmarks/hf_small.py's CPU model (what gpu_check.sh profiles): causal mask, SDPA, rotary
    embeddings and the model's own loss; the count on 2 and 4 sequences scaled to 8 is the count of 8."""
    pytest.importorskip("transformers")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from hf_small import small_llama
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    resolved = tm.Resolved("hf_small.py:small_llama", small_llama, "small_llama")
    scaled = tm.count_flops(tm.TorchModelStep(tm.build_workload(resolved, CPU, batch_size=8), CPU, "hf"))
    work = tm.build_workload(resolved, CPU, batch_size=8)
    whole = tm._count(tm.TorchModelStep(work, CPU, "hf"), None)
    assert scaled[2] == "counted on sub-batches of 2 and 4 samples, scaled to the batch"
    assert scaled[:2] == pytest.approx(whole, rel=1e-12)
    assert work.model_id == "hf-small-llama" and work.batch_size == 8


@pytest.mark.parametrize("batch", [3, 4])
def test_a_batch_of_4_or_fewer_is_counted_whole(batch):
    model = TinyAttention()
    x, y = torch.randn(batch, 4, 16), torch.randint(0, 3, (batch,))
    work = tm.build_workload(tm.Resolved("test:tiny", lambda: (model, (x, y)), "tiny"), CPU)
    forward, training, how = tm.count_flops(tm.TorchModelStep(work, CPU, "test:tiny"))
    assert how == "counted on the whole batch" and (forward, training) == _full_batch_count(copy.deepcopy(model), x, y)


def test_the_counting_graphs_are_gone_before_the_first_timed_step(tiny_budget):
    """What the timed steps' memory holds: no tensor of the count's forward passes is alive when the
    first timed step starts (weak references to their activations are dead), so the peak of the
    timed step is the step's own."""
    import weakref

    model = TinyAttention()
    refs: list[weakref.ref] = []
    alive_at_first_timed_step: list[int] = []

    def hook(module, inputs, output):
        if output.shape[0] < 8:  # a counting pass (sub-batch)
            refs.append(weakref.ref(output))
        elif not alive_at_first_timed_step:
            alive_at_first_timed_step.append(sum(r() is not None for r in refs))

    model.conv.register_forward_hook(hook)
    x, y = torch.randn(8, 4, 16), torch.randint(0, 3, (8,))
    section = tm.measure_torch_model(tm.Resolved("test:tiny", lambda: (model, (x, y)), "tiny"), device=CPU)
    assert len(refs) == 2 and alive_at_first_timed_step == [0]
    assert model.seen[:2] == [2, 4] and set(model.seen[2:]) == {8}  # counted at 2 and 4, timed at 8
    assert section["batch_size"] == 8
    assert section["notes"][0] == ("FLOPs counted on sub-batches of 2 and 4 samples, scaled to the batch 8 "
                                   "(FlopCounterMode); the count's graph was freed before timing")


def test_out_of_memory_says_what_was_in_use_what_was_asked_and_the_device_total():
    from profiler.memory import describe_need, requested_bytes

    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 11.00 GiB. GPU 0 has a total capacity "
                                  "of 139.81 GiB of which 2.10 GiB is free.")
    assert requested_bytes(cuda) == 11 * 2**30
    cpu = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 3221225472 bytes.")
    assert requested_bytes(cpu) == 3 * 2**30
    assert requested_bytes(RuntimeError("out of memory")) is None
    assert describe_need(int(130.5 * 2**30), 11 * 2**30, int(139.8 * 2**30)) == (
        "it needed more than 141.5 GiB (130.5 GiB in use + 11.0 GiB requested; the device has 139.8 GiB)")
    assert describe_need(None, 3 * 2**30, None) == "it asked for 3.00 GiB more"
    assert describe_need(None, None, 2**30) == ""


# -- SPEC errors: one line each, naming the SPEC ---------------------------------------------------


MODELS_FILE = textwrap.dedent("""
    import torch
    from torch import nn

    NOT_CALLABLE = 3
    instance = nn.Linear(2, 2)

    def returns_module():
        return nn.Linear(2, 2)

    def returns_triple():
        return nn.Linear(2, 2), torch.randn(3, 2), None

    def not_a_module():
        return "model", (torch.randn(3, 2), torch.randn(3, 2))

    def bad_batch():
        return nn.Linear(2, 2), [1, 2, 3]

    def per_sample_loss():
        return {"model": nn.Linear(2, 2), "batch": (torch.randn(3, 2), torch.randn(3, 2)),
                "loss_fn": lambda out, y: (out - y) ** 2}

    class Elsewhere(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)

        def forward(self, x):
            return self.linear(x) + torch.ones(2, device="meta")

    def wrong_device():
        return Elsewhere(), (torch.randn(3, 2), torch.randint(0, 2, (3,)))

    class Hungry(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)

        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    def out_of_memory():
        return Hungry(), (torch.randn(3, 2), torch.randint(0, 2, (3,)))

    class HungryAtEight(nn.Module):  # fits the FLOP count's sub-batches, not the training batch
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)

        def forward(self, x):
            if x.shape[0] > 4:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                                   "12884901888 bytes. Error code 12 (Cannot allocate memory)")
            return self.linear(x)

    def out_of_memory_at_eight():
        return HungryAtEight(), (torch.randn(8, 2), torch.randint(0, 2, (8,)))

    def raises():
        raise ValueError("no weights here")

    def unknown_key():
        return {"model": nn.Linear(2, 2), "batch": (torch.randn(3, 2), None), "lr": 0.1}

    def scalar_input():
        return nn.Linear(2, 2), (torch.tensor(1.0), torch.tensor(0))

    def no_batch_size():
        return nn.Linear(2, 2), (torch.randn(3, 2), torch.randint(0, 2, (3,)))

    def frozen():
        model = nn.Linear(2, 2)
        model.requires_grad_(False)
        return model, (torch.randn(3, 2), torch.randint(0, 2, (3,)))
    """)


@pytest.mark.parametrize("spec, extra, message", [
    ("nocolon", (), "--torch-model nocolon: expected a ':' between the module or file and the callable; use "
                    "module:callable, path/to/file.py:callable, or builtin:NAME (builtins: mnist-mlp, resnet-50)"),
    ("builtin:mnist", (), "--torch-model builtin:mnist: unknown builtin 'mnist'; did you mean builtin:mnist-mlp?"),
    ("builtin:vgg-16", (), "--torch-model builtin:vgg-16: unknown builtin 'vgg-16'; builtins: mnist-mlp, resnet-50"),
    ("no_such_module_xyz:build", (), "--torch-model no_such_module_xyz:build: no module named 'no_such_module_xyz' "
                                     "in the current directory or on PYTHONPATH"),
    ("missing/models.py:build", (), "--torch-model missing/models.py:build: file missing/models.py not found"),
    ("broken.py:build", (), "--torch-model broken.py:build: importing broken.py failed: ModuleNotFoundError: "
                            "No module named 'not_installed_anywhere'"),
    ("models:buld", (), "--torch-model models:buld: module models has no attribute 'buld'; did you mean 'build'?"),
    ("models.py:NOT_CALLABLE", (), "--torch-model models.py:NOT_CALLABLE: NOT_CALLABLE is a int, not a callable "
                                   "that returns (model, batch) or a dict with 'model' and 'batch'"),
    ("models.py:instance", (), "--torch-model models.py:instance: instance is a model instance; name a function "
                               "that returns (model, batch) or a dict with 'model' and 'batch'"),
    ("models.py:returns_module", (), "--torch-model models.py:returns_module: the callable must return (model, batch) "
                                     "or a dict with 'model' and 'batch', got a Linear"),
    ("models.py:returns_triple", (), "--torch-model models.py:returns_triple: the callable must return (model, batch) "
                                     "or a dict with 'model' and 'batch', got a tuple of 3"),
    ("models.py:not_a_module", (), "--torch-model models.py:not_a_module: the model must be a torch.nn.Module, "
                                   "got a str"),
    ("models.py:bad_batch", (), "--torch-model models.py:bad_batch: the batch must be (inputs, targets), a dict of "
                                "inputs or a tensor, got a list of 3"),
    ("models.py:per_sample_loss", (), "--torch-model models.py:per_sample_loss: the loss must be a scalar tensor, "
                                      "got shape (3, 2); reduce it (e.g. .mean()) or give a loss_fn"),
    ("models.py:wrong_device", (), "--torch-model models.py:wrong_device: the model and its batch must be on one "
                                   "device (cpu): RuntimeError: Tensor on device meta is not on the expected device "
                                   "cpu!"),
    ("models.py:raises", (), "--torch-model models.py:raises: the callable raised ValueError: no weights here"),
    ("models.py:unknown_key", (), "--torch-model models.py:unknown_key: the returned dict has unknown key 'lr'; "
                                  "known: model, batch, loss_fn, optimizer, id, notes"),
    ("models.py:scalar_input", (), "--torch-model models.py:scalar_input: cannot tell the batch size: the inputs hold "
                                   "no tensor with a leading batch dimension"),
    ("models.py:no_batch_size", ("--micro-batch", "4"), "--torch-model models.py:no_batch_size: --micro-batch needs a "
                                                        "callable with a batch_size parameter; size the example batch "
                                                        "in the callable instead"),
    ("models.py:frozen", (), "--torch-model models.py:frozen: the model has no parameter that requires grad: "
                             "nothing to train"),
])
def test_spec_errors_are_one_line_naming_the_spec(in_tmp, tmp_path, spec, extra, message):
    (tmp_path / "models.py").write_text(MODELS_FILE.replace("def returns_module", "def build():\n    pass\n\n\n"
                                                                                  "def returns_module"))
    (tmp_path / "broken.py").write_text("import not_installed_anywhere\n")
    result = in_tmp("profile", "--device", "cpu", "--torch-model", spec, *extra, "--quiet")
    assert result.stderr.strip() == f"Error: {message}"
    assert result.exit_code == 2
    assert not Path("gpucost-calibration.yaml").exists()


def test_out_of_memory_is_one_line_with_exit_1(in_tmp, tmp_path):
    (tmp_path / "models.py").write_text(MODELS_FILE)
    result = in_tmp("profile", "--device", "cpu", "--torch-model", "models.py:out_of_memory", "--quiet")
    assert result.exit_code == 1
    total = f"{tm.DeviceMemory(CPU).total_bytes() / 2**30:.1f}"
    assert result.stderr.strip() == ("Error: --torch-model models.py:out_of_memory: out of memory on cpu during the "
                                     "FLOP count's forward and backward pass at batch 3: it asked for 80.00 GiB more "
                                     f"(the device has {total} GiB); pass a smaller --micro-batch (a callable that "
                                     "takes batch_size) or return a smaller example batch")


def test_a_batch_that_runs_out_of_memory_only_when_timed_says_what_it_needed(in_tmp, tmp_path):
    """The FLOPs are counted on sub-batches of 2 and 4, so a batch of 8 that does not fit fails in its
    training step, with the memory it asked for (the allocator's message) in the one line."""
    (tmp_path / "models.py").write_text(MODELS_FILE)
    result = in_tmp("profile", "--device", "cpu", "--torch-model", "models.py:out_of_memory_at_eight", "--quiet")
    assert result.exit_code == 1
    total = f"{tm.DeviceMemory(CPU).total_bytes() / 2**30:.1f}"
    assert result.stderr.strip() == ("Error: --torch-model models.py:out_of_memory_at_eight: out of memory on cpu "
                                     "during a fp32 training step at batch 8: it asked for 12.00 GiB more (the device "
                                     f"has {total} GiB); pass a smaller --micro-batch (a callable that takes "
                                     "batch_size) or return a smaller example batch")


@pytest.mark.parametrize("args, message", [
    (("--model", "gpt2-small"), "--model does not apply to --torch-model (it times the model the SPEC returns)"),
    (("--hf-config", "config.json"), "--hf-config does not apply to --torch-model (it times the model the SPEC returns)"),
    (("--comm",), "--comm does not apply to --torch-model (it times the model the SPEC returns)"),
    (("--seq-len", "128"), "--seq-len does not apply to --torch-model (it times the model the SPEC returns)"),
    (("--micro-batch", "0"), "--micro-batch must be a positive integer, got 0"),
])
def test_options_that_do_not_apply_to_torch_model(in_tmp, args, message):
    result = in_tmp("profile", "--torch-model", "builtin:mnist-mlp", *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {message}"


def test_importing_the_record_module_and_the_cli_does_not_import_torch():
    code = ("import sys, estimator.records.torch_model, estimator.records.calibration, estimator.cli; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# -- the record ----------------------------------------------------------------------------------


def section() -> dict:
    return {
        "id": "mnist-mlp", "spec": "builtin:mnist-mlp", "created_utc": "2026-12-01T10:00:00Z",
        "command": "gpucost profile --torch-model builtin:mnist-mlp", "partial": False, "duration_s": 14.2,
        "params": 648010, "batch_size": 64, "flops_per_sample": 3098000.0, "forward_flops_per_sample": 1294000.0,
        "optimizer": "SGD(lr=0.01, momentum=0.9)", "loss": "cross_entropy",
        "results": {
            "fp32": {"samples_per_s": 36000.0, "median_samples_per_s": 40000.0, "best_tflops": 0.15,
                     "median_tflops": 0.12392, "worst_tflops": 0.01, "stdev_pct": 20.0, "iterations": 5000,
                     "slow_steps": 40, "segment_samples_per_s": [39000.0, 38500.0, 29000.0, 37000.0, 38000.0]},
            "bf16": {"skipped": "not measured by default on a CPU"},
        },
    }


def test_segments_split_the_timed_steps_in_order():
    assert tm._segments([1.0, 1.0, 2.0, 2.0, 4.0], 10, 5) == [10.0, 10.0, 5.0, 5.0, 2.5]
    assert tm._segments([1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0], 6, 3) == [6.0, 3.0, 2.0]  # 3 + 2 + 2 steps
    assert tm._segments([2.0, 2.0], 4, 5) == [2.0, 2.0]  # never more groups than steps
    assert tm._segments([1.0, 9.0, 1.0, 1.0], 2, 2, limit_s=2.0) == [2.0, 2.0]  # the 9 s step is left out


def test_interrupted_steps_are_left_out_of_the_throughput():
    from profiler.timing import Timing

    times = (1.0,) * 90 + (1.5,) * 5 + (30.0,) * 5  # five steps interrupted by another process
    result = tm._result(Timing(times), flops_per_step=1e12, batch=10)
    assert result["slow_steps"] == 5 and result["iterations"] == 100
    assert result["samples_per_s"] == pytest.approx(10 * 95 / (90 + 7.5))
    assert result["median_samples_per_s"] == 10.0 and result["worst_tflops"] == pytest.approx(1 / 30, rel=1e-5)


def test_the_record_round_trips_through_its_dataclass():
    data = section()
    typed = TorchModelRecord.from_dict(data)
    assert typed.to_dict() == data
    assert typed.result("fp32").median_samples_per_s == 40000.0 and typed.result("bf16") is None


def _set(data: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize("path, value, message", [
    ("batch_size", 0, "entry 'torch_model', field 'batch_size': must be an integer >= 1, got 0"),
    ("id", _DELETE, "entry 'torch_model', field 'id': is required"),
    ("spec", "", "entry 'torch_model', field 'spec': must be a non-empty string, got ''"),
    ("color", "red", "entry 'torch_model', field 'color': is not a known field; known: id, spec, created_utc, "
                     "command, partial, duration_s, params, batch_size, flops_per_sample, forward_flops_per_sample, "
                     "optimizer, loss, results, notes"),
    ("flops_per_sample", -1.0, "entry 'torch_model', field 'flops_per_sample': must be a finite number >= 0, got -1.0"),
    ("forward_flops_per_sample", 4e6, "entry 'torch_model', field 'forward_flops_per_sample': must not exceed "
                                      "flops_per_sample (forward + backward), got 4000000.0 > 3098000.0"),
    ("partial", "no", "entry 'torch_model', field 'partial': must be true or false, got 'no'"),
    ("created_utc", "yesterday", "entry 'torch_model', field 'created_utc': must be an ISO 8601 UTC time, "
                                 "got 'yesterday'"),
    ("results", {}, "entry 'torch_model', field 'results': must hold at least one dtype"),
    ("results.fp64", {"skipped": "x"}, "entry 'torch_model.results', field 'fp64': is not a dtype; use one of "
                                       "fp32, tf32, bf16, fp16, fp8"),
    ("results.fp32.samples_per_s", 0, "entry 'torch_model.results.fp32', field 'samples_per_s': must be a finite "
                                      "number > 0, got 0"),
    ("results.fp32.median_samples_per_s", 41000.0, "entry 'torch_model.results.fp32', field 'median_samples_per_s': "
                                                   "must equal median_tflops x 1e12 / flops_per_sample (40000), got "
                                                   "41000.0"),
    ("results.fp32.samples_per_s", 50000.0, "entry 'torch_model.results.fp32', field 'samples_per_s': must lie between "
                                            "the rates of the worst and the best step (3227.89-48418.3), got 50000.0"),
    ("results.fp32.median_samples_per_s", _DELETE, "entry 'torch_model.results.fp32', field 'median_samples_per_s': "
                                                   "is required"),
    ("results.fp32.worst_tflops", 0.2, "entry 'torch_model.results.fp32', field 'median_tflops': must lie between "
                                       "worst_tflops and best_tflops"),
    ("results.fp32.iterations", 0, "entry 'torch_model.results.fp32', field 'iterations': must be an integer >= 1, "
                                   "got 0"),
    ("results.fp32.median_tflops", _DELETE, "entry 'torch_model.results.fp32', field 'median_tflops': is required"),
    ("results.bf16", {"skipped": "x", "iterations": 3}, "entry 'torch_model.results.bf16', field 'iterations': is "
                                                        "not a known field; known: skipped"),
    ("notes", "one", "entry 'torch_model', field 'notes': must be a list of strings"),
    ("results.fp32.slow_steps", 3000, "entry 'torch_model.results.fp32', field 'slow_steps': must be at most half of "
                                      "iterations (5000), got 3000"),
    ("results.fp32.slow_steps", -1, "entry 'torch_model.results.fp32', field 'slow_steps': must be an integer >= 0, "
                                    "got -1"),
    ("results.fp32.segment_samples_per_s", [1.0] * 6, "entry 'torch_model.results.fp32', field "
                                                      "'segment_samples_per_s': must be a list of 1 to 5 rates > 0, got "
                                                      "[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]"),
    ("results.fp32.segment_samples_per_s", [60000.0], "entry 'torch_model.results.fp32', field "
                                                      "'segment_samples_per_s': must lie between the rates of the worst "
                                                      "and the best step (3227.89-48418.3), got [60000.0]"),
])
def test_record_errors_are_one_line_naming_file_entry_and_field(path, value, message):
    data = _set(section(), path, value)
    with pytest.raises(CatalogError) as caught:
        validate_torch_model(data, "cal.yaml")
    assert str(caught.value) == f"cal.yaml: {message}"


def test_a_calibration_file_with_a_broken_torch_model_section_is_reported_on_read(tmp_path):
    record = copy.deepcopy(_cpu_record())
    record["torch_model"] = _set(section(), "batch_size", "64")
    path = tmp_path / "cal.yaml"
    path.write_text(__import__("yaml").safe_dump(record))
    with pytest.raises(CatalogError) as caught:
        read_calibration(path)
    assert str(caught.value) == (f"{path}: entry 'torch_model', field 'batch_size': must be an integer >= 1, "
                                 "got '64'")
    record["torch_model"] = section()
    assert validate_calibration(record)["torch_model"] == section()


def test_measured_samples_per_s_is_the_throughput_of_the_timed_steps_with_the_step_band():
    record = {**_cpu_record(), "torch_model": section()}
    rate, info = measured_samples_per_s(record, "mnist-mlp", "fp32")
    assert rate == 36000.0 and info["median_samples_per_s"] == 40000.0
    assert info["band_samples_per_s"] == (29000.0, 39000.0)  # the slowest and the fastest fifth of the steps
    assert info["achieved_tflops"] == pytest.approx(36000.0 * 3098000.0 / 1e12)
    assert info["source"] == ("calibration: torch_model mnist-mlp fp32 (builtin:mnist-mlp; batch 64, SGD(lr=0.01, "
                              f"momentum=0.9); 5000 steps) on {record['device']['name']}, 2026-12-01")
    assert info["warnings"] == [] and info["batch_size"] == 64
    del record["torch_model"]["results"]["fp32"]["segment_samples_per_s"]
    assert measured_samples_per_s(record, "mnist-mlp", "fp32")[1]["band_samples_per_s"] == (36000.0, 40000.0)
    record["torch_model"]["results"]["fp32"]["slow_steps"] = 400
    record["torch_model"]["partial"] = True
    assert measured_samples_per_s(record, "mnist-mlp", "fp32")[1]["warnings"] == [
        "the torch_model measurement of mnist-mlp is partial (the profile was interrupted)",
        "the device was busy while mnist-mlp was profiled: 400 of 5000 steps took more than 2 x the median step "
        "and were left out; profile again at a quiet time"]
    assert measured_samples_per_s(record, "mnist-mlp", "fp16") is None
    assert measured_samples_per_s({"device": {}}, "mnist-mlp", "fp32") is None


# -- writing into an existing file ---------------------------------------------------------------


def _cpu_record() -> dict:
    """docs/examples/cpu-gpt2-small.yaml, as measured on this machine's CPU (same device name)."""
    from tests.calibration_samples import cpu_example

    record = cpu_example()
    record["device"] = describe_cpu(None).record()
    return record


def test_the_section_is_merged_into_a_calibration_file_of_the_same_device(in_tmp, tmp_path):
    existing = _cpu_record()
    write_calibration(existing, tmp_path / "cal.yaml")
    result = in_tmp("profile", "--torch-model", "builtin:mnist-mlp", "--device", "cpu", "--output", "cal.yaml")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.rstrip().endswith("Wrote the torch_model section to cal.yaml (its other sections kept)")
    merged = read_calibration(tmp_path / "cal.yaml")
    assert merged["torch_model"]["id"] == "mnist-mlp"
    for key in ("matmul", "mlp", "bandwidth", "model", "created_utc", "command", "notes", "telemetry"):
        assert merged[key] == existing[key], key
    # a second run replaces only the torch_model section
    first = merged["torch_model"]
    result = in_tmp("profile", "--torch-model", "builtin:mnist-mlp", "--device", "cpu", "--output", "cal.yaml")
    assert result.exit_code == 0, result.stderr
    again = read_calibration(tmp_path / "cal.yaml")
    assert again["torch_model"]["created_utc"] >= first["created_utc"] and again["matmul"] == existing["matmul"]


def test_a_file_of_another_device_is_replaced_and_a_broken_file_refused_before_measuring(in_tmp, tmp_path):
    other = _cpu_record()
    other["device"] = {**other["device"], "name": "Some Other CPU"}
    write_calibration(other, tmp_path / "cal.yaml")
    result = in_tmp("profile", "--torch-model", "builtin:mnist-mlp", "--device", "cpu", "--output", "cal.yaml")
    assert result.exit_code == 0, result.stderr
    assert "it held a calibration of Some Other CPU, another device, which this one replaces" in result.stderr
    record = read_calibration(tmp_path / "cal.yaml")
    assert record["device"]["name"] != "Some Other CPU" and record["matmul"] == {}
    (tmp_path / "bad.yaml").write_text("schema_version: 1\n")
    result = in_tmp("profile", "--torch-model", "builtin:mnist-mlp", "--device", "cpu", "--output", "bad.yaml")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: --output bad.yaml exists and is not a valid calibration file (bad.yaml, "
                                     "field 'bandwidth': is required); remove it or choose another file")


def test_merge_rules():
    existing = _cpu_record()
    new = {**_cpu_record(), "matmul": {}, "mlp": {}, "torch_model": {**section(), "partial": True}}
    merged, how = merge_torch_model(new, existing)
    assert how == "merged" and merged["partial"] is True and merged["matmul"] == existing["matmul"]
    assert merge_torch_model(new, None) == (new, "new")
    swept = {**new, "matmul": existing["matmul"]}
    assert merge_torch_model(swept, existing)[1] == "new"  # a run with its own sweep replaces the file
    assert merge_torch_model(new, {**existing, "device": {**existing["device"], "name": "x"}})[1] == "replaced"


def test_ctrl_c_keeps_the_timed_dtypes_and_never_replaces_a_complete_file(in_tmp, tmp_path, monkeypatch):
    existing = _cpu_record()
    write_calibration(existing, tmp_path / "cal.yaml")
    real = tm.measure
    calls = []

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tm, "measure", interrupt_second)
    result = in_tmp("profile", "--torch-model", "builtin:mnist-mlp", "--device", "cpu", "--dtype", "fp32,bf16",
                    "--output", "cal.yaml")
    assert result.exit_code == 130
    assert "cal.yaml (complete) was kept as it was" in result.stderr
    assert read_calibration(tmp_path / "cal.yaml") == existing
    partial = read_calibration(partial_path(tmp_path / "cal.yaml"))
    assert partial["partial"] is True and partial["torch_model"]["partial"] is True
    assert "median_tflops" in partial["torch_model"]["results"]["fp32"]
    assert partial["torch_model"]["results"]["bf16"] == {"skipped": tm.INTERRUPTED}
    assert partial["torch_model"]["notes"][-1] == ("interrupted (Ctrl-C) while timing bf16: the dtypes not timed are "
                                                   "marked skipped")
    assert partial["matmul"] == existing["matmul"]  # the same device: the file's other sections come along


def test_ctrl_c_before_the_model_is_built_writes_nothing(in_tmp, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tm, "build_workload", interrupt)
    result = in_tmp("profile", "--torch-model", "builtin:mnist-mlp", "--device", "cpu")
    assert result.exit_code == 130
    assert result.stderr.rstrip().endswith("Interrupted before anything was measured: nothing written.")
    assert not Path("gpucost-calibration.yaml").exists()


def test_library_errors_are_gpucost_errors():
    with pytest.raises(InputError):
        tm.resolve_spec("builtin:nope")
    assert issubclass(InputError, GpucostError)
    with pytest.raises(InputError, match="no training step for dtype 'fp64'"):
        tm.measure_torch_model("builtin:mnist-mlp", device=CPU, dtypes=["fp64"])
