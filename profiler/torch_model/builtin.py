"""Models built into ``gpucost profile --torch-model builtin:NAME``, to try without writing code.

Each is a callable of the ``--torch-model`` kind (profiler/torch_model/step.py): it takes the optional
keywords ``batch_size`` and ``device`` and returns ``(model, (inputs, targets))``.

``builtin:mnist-mlp`` -- the MLP 784-500-500-10 of the course slides, trained on MNIST: two hidden
layers of 500 sigmoid units, 10 output logits, cross-entropy. Parameters:
784*500+500 + 500*500+500 + 500*10+10 = 648,010. Forward FLOPs per image:
2 x (784*500 + 500*500 + 500*10) = 1,294,000 (one multiply-add = 2 FLOPs; biases and sigmoids are
elementwise and not counted, as FlopCounterMode does not count them either). Inputs: 28 x 28
images flattened to 784 floats in [0, 1) (random; no dataset is downloaded), integer labels 0-9.
Batch 64: the default of PyTorch's own MNIST example (pytorch/examples ``mnist/main.py``,
``--batch-size 64``), the usual choice for this network. Optimizer: SGD, momentum 0.9, lr 0.01,
the classic recipe for this MLP (and what catalogs/models.yaml says the slides train with).

``builtin:resnet-50`` -- ResNet-50 (He et al. 2016, arXiv 1512.03385, Table 1): a 7x7/2 stem conv,
3x3/2 max pool, bottleneck blocks [3, 4, 6, 3] of widths 64-128-256-512 (x4 out), global average
pool, a 1000-way fully-connected layer. As torchvision's ``resnet50`` (the "v1.5" layout), a block
that downsamples puts its stride in the 3x3 conv, not in the first 1x1 as the paper's v1 did; the
parameters are the same either way: 25,557,032 (torchvision's published count; checked in
tests/test_torch_model.py on the meta device). Forward FLOPs at 224 x 224 as FlopCounterMode counts
them (convolutions and the fc layer, 2 FLOPs per multiply-add; batch norm, ReLU, pooling and the
residual additions are not counted): 8.18e9, i.e. torchvision's 4.09 GMACs x 2 (He et al. print
3.8e9 multiply-adds for v1, whose downsampling 1x1 convs run at the lower resolution).
Inputs: random 3 x 224 x 224 images, integer labels 0-999. Batch: 8 on a CPU (a training step
there takes seconds), on a GPU the largest power of two up to 256 whose activations (about
110 MB per image in fp32) fit in 60% of the free memory. Optimizer: SGD, momentum 0.9, lr 0.1,
weight decay 1e-4 (He et al. Section 3.4, torchvision's reference recipe). Memory format: on CUDA
``channels_last`` (NHWC) by default, the model and the images alike, with the GPU profile's AMP
(bf16 autocast): the standard recipe (NVIDIA DeepLearningExamples,
PyTorch/Classification/ConvNets/resnet50v1.5: mixed precision with ``--memory-format nhwc``), whose
convolutions run on tensor cores without layout transposes. On one H200 (bf16 AMP, batch 256,
torchvision's ResNet-50, ../shared/measurements/h200-2026-12/resnet_ref.py) it trained 4,628 images/s
channels_last against 2,399 in NCHW. ``memory_format="nchw"`` (``--memory-format nchw``) keeps
NCHW; on a CPU NCHW is the default. The section's notes say which was used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

MNIST_BATCH = 64
RESNET_CPU_BATCH = 8
RESNET_MAX_BATCH = 256
RESNET_BYTES_PER_IMAGE = 110 * 2**20  # fp32 training activations of one 224 x 224 image, rounded up
RESNET_MEMORY_FRACTION = 0.6


def mnist_mlp_module() -> nn.Module:
    """784 -> 500 -> 500 -> 10 with sigmoid hidden units; outputs logits (the loss applies softmax)."""
    return nn.Sequential(nn.Linear(784, 500), nn.Sigmoid(), nn.Linear(500, 500), nn.Sigmoid(), nn.Linear(500, 10))


def mnist_mlp(batch_size: int = MNIST_BATCH, device: Any = None) -> dict[str, Any]:
    """``builtin:mnist-mlp``: the MLP, an MNIST-shaped batch and SGD with momentum 0.9."""
    device = torch.device(device or "cpu")
    model = mnist_mlp_module().to(device)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(batch_size, 784, generator=generator).to(device)
    targets = torch.randint(0, 10, (batch_size,), generator=generator).to(device)
    return {"model": model, "batch": (inputs, targets),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)}


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand x4, each followed by batch norm; ReLU after
    the first two and after the residual sum. A 1x1 projection (+ batch norm) on the shortcut where
    the shape changes."""

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class ResNet50(nn.Module):
    """He et al. 2016 Table 1, 50-layer column, in torchvision's layout (stride in the 3x3 conv) and
    with its module names (conv1, bn1, layer1-layer4, fc), so a torchvision state dict loads."""

    def __init__(self, num_classes: int = 1000, blocks: tuple[int, ...] = (3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for index, count in enumerate(blocks):
            width = 64 * 2**index
            stage = []
            for block in range(count):
                stage.append(Bottleneck(channels, width, stride=2 if block == 0 and index > 0 else 1))
                channels = width * 4
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(self.num_stages):
            x = getattr(self, f"layer{index + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet_batch_size(device: torch.device) -> int:
    """8 on a CPU; on a GPU the largest power of two <= 256 whose fp32 activations fit in 60% of
    the free memory (at least 1)."""
    if device.type != "cuda":
        return RESNET_CPU_BATCH
    free, _total = torch.cuda.mem_get_info(device)
    batch = 1
    while batch * 2 <= RESNET_MAX_BATCH and batch * 2 * RESNET_BYTES_PER_IMAGE <= RESNET_MEMORY_FRACTION * free:
        batch *= 2
    return batch


def resnet_50(batch_size: int | None = None, device: Any = None, memory_format: str | None = None) -> dict[str, Any]:
    """``builtin:resnet-50``: the network, random 224 x 224 images and SGD (momentum 0.9, wd 1e-4),
    channels_last on CUDA and NCHW on a CPU unless ``memory_format`` (``nchw``, ``channels_last``) says."""
    device = torch.device(device or "cpu")
    batch_size = batch_size or resnet_batch_size(device)
    chosen = memory_format or ("channels_last" if device.type == "cuda" else "nchw")
    layout = torch.channels_last if chosen == "channels_last" else torch.contiguous_format
    model = ResNet50().to(device).to(memory_format=layout)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch_size, 3, 224, 224, generator=generator).to(device).to(memory_format=layout)
    targets = torch.randint(0, 1000, (batch_size,), generator=generator).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    why = ("the default on CUDA: the standard recipe with AMP; --memory-format nchw keeps NCHW"
           if memory_format is None and chosen == "channels_last"
           else "the default on a CPU; --memory-format channels_last lays it out NHWC"
           if memory_format is None else "--memory-format")
    note = f"memory format: {'channels_last (NHWC)' if chosen == 'channels_last' else 'NCHW'} ({why})"
    return {"model": model, "batch": (inputs, targets), "optimizer": optimizer, "notes": [note]}


BUILTINS = {"mnist-mlp": mnist_mlp, "resnet-50": resnet_50}

__all__ = ["BUILTINS", "Bottleneck", "ResNet50", "mnist_mlp", "mnist_mlp_module", "resnet_50", "resnet_batch_size"]
