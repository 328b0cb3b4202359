"""Conv4, ResNet-12 and MLP backbones: output shapes, and batch norm with per-batch statistics only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metarl.errors import UserError
from metarl.supervised.models import MLP, Conv4, ResNet12, conv4_feature_dim


@pytest.mark.parametrize(
    ("channels", "size", "downsample", "dim"),
    [(1, 28, "maxpool", 64), (3, 84, "maxpool", 1600), (1, 28, "stride", 64), (3, 84, "stride", 64)],
)
def test_conv4_shapes(channels, size, downsample, dim):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, channels, size, size, generator=gen)
    encoder = Conv4(channels, size, ways=None, downsample=downsample)
    classifier = Conv4(channels, size, ways=5, downsample=downsample)
    assert encoder.embedding_dim == dim == conv4_feature_dim(size, downsample=downsample)
    assert encoder.embed(x).shape == (6, dim)
    assert encoder(x).shape == (6, dim)
    assert classifier(x).shape == (6, 5)
    assert classifier.head_names == ["head.weight", "head.bias"]
    assert encoder.head_names == []


@pytest.mark.parametrize("downsample", ["maxpool", "stride"])
def test_conv4_embed_equals_its_blocks_in_order(downsample):
    """embed pools before the ReLU (they commute): same embeddings and gradients as conv, BN, ReLU, pool."""
    torch.manual_seed(0)
    encoder = Conv4(1, 28, ways=None, downsample=downsample).double()
    x = torch.randn(10, 1, 28, 28, dtype=torch.float64)
    maps = encoder.features(x)
    reference = maps.flatten(1) if downsample == "maxpool" else maps.mean((2, 3))
    reference_grads = torch.autograd.grad(reference.square().sum(), list(encoder.parameters()))
    embedding = encoder.embed(x)
    grads = torch.autograd.grad(embedding.square().sum(), list(encoder.parameters()))
    torch.testing.assert_close(embedding, reference)
    for mine, ref in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(mine, ref)


def test_resnet12_shapes_layers_and_residual_blocks():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 84, 84, generator=gen)
    encoder, classifier = ResNet12(3), ResNet12(3, ways=5, widths=(8, 8, 16, 16))
    assert encoder.embedding_dim == 640 and encoder(x).shape == (3, 640)
    assert classifier(x).shape == (3, 5) and classifier.head_names == ["head.weight", "head.bias"]
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 16 and all(c.bias is None for c in convs)  # 4 blocks x (3 + the 1x1 shortcut)
    assert [c.out_channels for c in convs[3::4]] == [64, 160, 320, 640]  # each block's shortcut
    assert not any("running" in name for name in encoder.state_dict())
    block = encoder.features[0].double()
    y = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    h = F.leaky_relu(block.bn1(block.conv1(y)), 0.1)
    h = block.bn3(block.conv3(F.leaky_relu(block.bn2(block.conv2(h)), 0.1)))
    expected = F.max_pool2d(F.leaky_relu(h + block.shortcut[1](block.shortcut[0](y)), 0.1), 2)
    torch.testing.assert_close(block(y), expected)
    with pytest.raises(UserError, match="H, W >= 16"):
        encoder(torch.rand(2, 3, 8, 8))
    with pytest.raises(UserError, match="four block widths"):
        ResNet12(3, widths=(64, 128, 256))


def test_conv4_has_four_blocks_of_64_filters():
    convs = [m for m in Conv4(1, 28, 5).modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 64, (3, 3))] + [
        (64, 64, (3, 3))
    ] * 3


def test_batch_norm_keeps_no_running_statistics():
    model = Conv4(1, 28, 5)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 4
    assert all(not m.track_running_stats and m.running_mean is None for m in norms)
    assert not any("running" in name for name in model.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 28, 28, generator=gen)
    before = [p.clone() for p in model.parameters()]
    out_train = model.train()(x)
    out_eval = model.eval()(x)  # no running statistics: eval mode normalises with the batch too
    torch.testing.assert_close(out_train, out_eval)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_batch_norm_uses_the_statistics_of_each_batch():
    torch.manual_seed(0)
    model = Conv4(1, 28, 5).eval()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 28, 28, generator=gen)
    other = torch.rand(4, 1, 28, 28, generator=gen) * 3
    alone = model(x)
    mixed = model(torch.cat([x, other]))[:4]
    # The same images in a different batch give different outputs.
    assert not torch.allclose(alone, mixed, atol=1e-3)
    # The first block's normalised activations have zero mean and unit variance per channel over the batch.
    conv, norm = model.features[0][0], model.features[0][1]
    z = norm(conv(x))
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var((0, 2, 3), unbiased=False), torch.ones(64), atol=1e-2, rtol=0)


def test_conv4_rejects_wrong_input_and_options():
    with pytest.raises(ValueError, match=r"\(batch, 1, H, W\)"):
        Conv4(1, 28).embed(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="downsample"):
        Conv4(downsample="avg")
    with pytest.raises(ValueError, match="too small"):
        Conv4(1, 8)


def test_mlp_is_the_maml_sinusoid_network():
    model = MLP()
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(40, 1), (40,), (40, 40), (40,), (1, 40), (1,)]
    assert model(torch.zeros(7, 1)).shape == (7, 1)
    assert model.embed(torch.zeros(7, 1)).shape == (7, 40)
    assert model.head_names == ["head.weight", "head.bias"]


@pytest.mark.parametrize(
    ("channels", "size", "downsample", "ways"),
    [(1, 28, "maxpool", 5), (3, 20, "maxpool", None), (1, 14, "stride", 3), (3, 20, "stride", None)],
)
@pytest.mark.parametrize("chunk_bytes", [2**30, 1])  # all tasks in one group; one task per chunk
def test_conv4_forward_tasks_equals_each_task_on_its_own(
    channels, size, downsample, ways, chunk_bytes, monkeypatch
):
    """Tasks as channel groups give each task the outputs of its own forward pass (its own batch statistics)."""
    from metarl.core import functional_forward
    from metarl.supervised import models

    monkeypatch.setattr(models, "TASK_CHUNK_BYTES", chunk_bytes)
    torch.manual_seed(0)
    model = Conv4(channels, size, ways=ways, hidden=6, downsample=downsample).double()
    gen = torch.Generator().manual_seed(1)
    tasks = 3
    params = {
        name: p.detach() + 0.1 * torch.randn(tasks, *p.shape, generator=gen, dtype=p.dtype)
        for name, p in model.named_parameters()
    }
    x = torch.rand(tasks, 4, channels, size, size, generator=gen, dtype=torch.float64)
    out = model.forward_tasks(params, x)
    for t in range(tasks):
        alone = functional_forward(model, {n: p[t] for n, p in params.items()}, x[t])
        torch.testing.assert_close(out[t], alone)
    with pytest.raises(ValueError, match=r"\(tasks, n, "):
        model.forward_tasks(params, x[0])
