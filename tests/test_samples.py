"""Workloads in samples and epochs (images, fine-tuning sequences), datasets, and moving a measured
run to other hardware: the course slides' ResNet-50, BERT and MNIST questions."""

from __future__ import annotations

import pytest

from estimator import EstimateRequest, estimate, load_catalog
from estimator.errors import InputError, UnknownNameError

CATALOG = load_catalog()


def test_resnet50_on_imagenet_for_90_epochs_is_3_x_forward_x_images_x_epochs(cli):
    # 3 x 8.18 GFLOPs (torchvision: 4.09 GMACs per 224x224 image) x 1,281,167 images (ILSVRC 2012,
    # Russakovsky et al. 2015) x 90 epochs = 2.83e18: the typed-request issue's check, within 10%.
    data = cli("estimate", "--model", "resnet-50", "--dataset", "imagenet", "--epochs", "90", "--gpu", "a100",
               "--num-gpus", "8", "--format", "json").json()
    assert data["flops"] == pytest.approx(2.83e18, rel=0.10)
    assert data["flops"] == pytest.approx(3 * 8.18e9 * 1_281_167 * 90, rel=1e-9)
    assert data["samples"] == 1_281_167 * 90 and data["epochs"] == 90 and data["dataset"] == "imagenet-1k"
    assert data["time_model"] == "flat"


def test_the_mnist_mlp_counts_its_three_matmuls():
    est = estimate(model="mnist-mlp", dataset="mnist", epochs=10, gpu="rtx-4090")
    forward = 2 * (784 * 500 + 500 * 500 + 500 * 10)
    assert est.flops == pytest.approx(3 * forward * 60_000 * 10)
    assert CATALOG.model("mnist-mlp").params == 784 * 500 + 500 + 500 * 500 + 500 + 500 * 10 + 10


def test_bert_fine_tuning_on_squad_uses_the_architecture_at_384_tokens():
    # SQuAD v1.1: 87,599 training questions (Rajpurkar et al. 2016, Table 2), sequences of 384.
    est = estimate(model="bert-base", dataset="squad", epochs=2, gpu="a100", num_gpus=8)
    assert est.tokens == 87_599 * 2 * 384 and est.seq_len == 384
    assert est.samples == pytest.approx(87_599 * 2)
    assert est.flops_detailed is not None and est.time_model == "step"


def test_flops_per_sample_serves_any_model_given_by_size():
    est = estimate(params="11M", samples="50K", epochs=3, flops_per_sample="1.8G", gpu="a100")
    assert est.flops == pytest.approx(3 * 1.8e9 * 50_000 * 3)


def test_a_time_measured_on_eight_a100s_moves_to_a_4090_at_the_same_share_of_its_peak():
    # The slides: ResNet-50 on ImageNet, 30 minutes on a DGX (8 x A100), "~0.5 x 8 x 1.5 = 6-10 hrs on a 4090".
    est = estimate(model="resnet-50", dataset="imagenet", epochs=35, gpu="rtx-4090", precision="tf32",
                   measured_time_s="30min", measured_gpu="a100", measured_num_gpus=8)
    a100_tf32, rtx_tf32 = 156.0, 82.6
    mfu = est.flops / (1800 * 8) / 1e12 / a100_tf32
    assert est.mfu == pytest.approx(mfu)
    assert est.achieved_tflops_per_gpu == pytest.approx(mfu * rtx_tf32)
    # the same FLOPs at the 4090's rate: 0.5 h x 8 devices x (156 / 82.6) = 7.55 h
    assert est.wall_clock_days * 24 == pytest.approx(0.5 * 8 * a100_tf32 / rtx_tf32)
    assert 6 <= est.wall_clock_days * 24 <= 10
    assert est.default_wall_clock_days is not None  # shown beside it: the estimate from FLOPs alone


def test_an_impossible_measured_time_is_flagged():
    est = estimate(model="resnet-50", dataset="imagenet", epochs=90, gpu="rtx-4090", precision="tf32",
                   measured_time_s="30min", measured_gpu="a100", measured_num_gpus=8)
    assert any("above its dense tf32 peak" in w for w in est.warnings)


@pytest.mark.parametrize(("options", "message"), [
    ({"model": "resnet-50", "epochs": 3}, "--epochs counts passes over --dataset NAME or --samples N"),
    ({"model": "resnet-50", "dataset": "imagenet", "tokens": "1T"}, "--dataset/--samples say how much is trained"),
    ({"params": "7B", "samples": "1M"}, "--params with --dataset/--samples needs --flops-per-sample"),
    ({"model": "bloom-176b", "samples": "1M"}, "'bloom-176b' gives no FLOPs per sample"),
    ({"model": "resnet-50", "dataset": "imagenet", "measured_gpu": "a100"}, "--measured-gpu describe a measured run"),
    ({"model": "resnet-50", "dataset": "imagenet", "measured_time_s": "30min"}, "--measured-time needs --measured-gpu"),
    ({"model": "resnet-50", "dataset": "imagenet", "measured_time_s": "30min", "measured_gpu": "a100", "tflops": 5},
     "give only one of --mfu, --tflops, --gpu-hours, --calibration or --measured-time"),
    ({"model": "resnet-50", "dataset": "imagenet", "epochs": 0}, "--epochs must be positive"),
])
def test_sample_workload_mistakes_are_one_line_errors(options, message):
    with pytest.raises(InputError) as info:
        estimate(**options)
    assert message in str(info.value)


def test_an_unknown_dataset_gets_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean 'imagenet'"):
        estimate(model="resnet-50", dataset="imagnet")


def test_the_datasets_catalog_has_sources_and_the_listing_command(cli):
    for dataset in CATALOG.datasets:
        assert dataset.source and dataset.retrieved and dataset.samples > 0
    assert {d.id for d in CATALOG.datasets} >= {"imagenet-1k", "mnist", "squad-v1.1", "bert-corpus"}
    assert CATALOG.dataset("imagenet").samples == 1_281_167 and CATALOG.dataset("mnist").samples == 60_000
    rows = cli("datasets", "--format", "json").json()["datasets"]
    assert {r["id"] for r in rows} == {d.id for d in CATALOG.datasets}


def test_bert_large_counts_like_the_transformers_class():
    from estimator.model.hf_config import load_architecture
    from estimator.model.params import count_params

    # transformers BertModel(hidden 1024, 16 heads, 24 layers, FFN 4096) on the meta device: 335,141,888
    assert count_params(load_architecture("bert-large", CATALOG.directory / "architectures")).total == 335_141_888


def test_the_request_accepts_a_duration_for_the_measured_time():
    assert EstimateRequest(model="resnet-50", dataset="imagenet", measured_time_s="1.5h",
                           measured_gpu="a100").measured_time_s == 5400
