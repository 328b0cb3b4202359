"""Meta-transfer learning (Sun et al. 2019): pre-training then meta-transfer phases, scaling and shifting of a
frozen backbone, the classifier's inner loop against a textbook per-task loop, the meta-gradient against finite
differences, and the shipped config on synthetic data (killed and resumed across the phase switch)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import random_image_batch, synthetic_run_overrides

from metarl.supervised import runner
from metarl.supervised.config import FewShotConfig
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.mtl import MetaTransferLearner, scaled_and_shifted_tensors, worst_classes
from metarl.supervised.models import Conv4, ResNet12
from metarl.training import config_file, load_config


def image_batch(seed=0, tasks=2) -> EpisodeBatch:
    return random_image_batch(seed, tasks, class_ids=torch.tensor([[0, 3], [2, 1]]))


def tiny(pretrain_iterations=0, **options) -> MetaTransferLearner:
    torch.manual_seed(0)
    learner = MetaTransferLearner(
        Conv4(1, 8, ways=None, hidden=3, blocks=2),
        ways=2,
        pretrain_iterations=pretrain_iterations,
        inner_steps=2,
        **options,
    )
    learner.set_train_classes(4)
    with torch.no_grad():  # scales and shifts away from their identity start, so a wrong formula shows
        for s in learner.scales:
            s.uniform_(0.5, 1.5)
        for t in learner.shifts:
            t.uniform_(-0.2, 0.2)
    return learner.double()


def test_inner_loop_equals_a_textbook_loop_on_scaled_and_shifted_features():
    learner, batch = tiny(), image_batch()
    logits = learner.adapted_logits(batch, steps=2)
    norms = [m for m in learner.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for t in range(batch.num_tasks):
        copy = Conv4(1, 8, ways=None, hidden=3, blocks=2).double()
        copy.load_state_dict(learner.encoder.state_dict())
        with torch.no_grad():  # SS on each convolution's batch norm, which would normalise it away before
            for norm, mine, scale, shift in zip(
                [m for m in copy.modules() if isinstance(m, torch.nn.BatchNorm2d)],
                norms,
                learner.scales,
                learner.shifts,
                strict=True,
            ):
                norm.weight.copy_(mine.weight * scale)
                norm.bias.copy_(mine.bias + shift)
            features = copy(torch.cat([batch.support_x[t], batch.query_x[t]]))
        support, query = features[:4], features[4:]
        w = learner.classifier.weight.detach().clone()
        b = learner.classifier.bias.detach().clone()
        for _ in range(2):
            w.requires_grad_(True)
            b.requires_grad_(True)
            loss = F.cross_entropy(support @ w.T + b, batch.support_y[t])
            gw, gb = torch.autograd.grad(loss, (w, b))
            w, b = (w - learner.inner_lr * gw).detach(), (b - learner.inner_lr * gb).detach()
        torch.testing.assert_close(logits[t].detach(), query @ w.T + b)


def test_meta_gradient_matches_finite_differences_and_leaves_the_backbone_alone():
    learner, batch = tiny(), image_batch()
    names, params = zip(
        *[(n, p) for n, p in learner.named_parameters() if not n.startswith("pretrain_head")], strict=True
    )
    grads = torch.autograd.grad(learner.meta_loss(batch)[0], params, allow_unused=True)
    for name, grad in zip(names, grads, strict=True):
        assert (grad is None) == name.startswith("encoder."), name  # the backbone is frozen in meta-transfer
    trained = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
    torch.manual_seed(1)
    direction = [torch.randn_like(p) for p, _ in trained]
    analytic = sum(float((g * d).sum()) for (_, g), d in zip(trained, direction, strict=True))
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for (p, _), d in zip(trained, direction, strict=True):
                p.add_(sign * 1e-6 * d)
        values.append(float(learner.meta_loss(batch)[0].detach()))
        with torch.no_grad():
            for (p, _), d in zip(trained, direction, strict=True):
                p.sub_(sign * 1e-6 * d)
    assert analytic == pytest.approx((values[0] - values[1]) / 2e-6, rel=1e-5)


def test_pretraining_trains_the_backbone_on_dataset_classes_then_switches_phase():
    learner, batch = tiny(pretrain_iterations=2), image_batch()
    optimizer = torch.optim.Adam(learner.parameters(), 1e-2)
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    loss, _ = learner.pretrain_loss(batch)
    labels = batch.class_ids.gather(1, torch.cat([batch.support_y, batch.query_y], 1))
    images = torch.cat([batch.support_x, batch.query_x], 1)
    per_episode = [  # each episode normalised with its own batch statistics, as in meta-transfer
        F.cross_entropy(learner.pretrain_head(learner.encoder(images[t])), labels[t], reduction="sum")
        for t in range(batch.num_tasks)
    ]
    torch.testing.assert_close(loss, sum(per_episode) / labels.numel())
    pooled = F.cross_entropy(learner.pretrain_head(learner.encoder(images.flatten(0, 1))), labels.flatten())
    assert abs(float(loss.detach() - pooled.detach())) > 1e-6  # the statistics of all episodes at once differ
    for _ in range(2):
        assert learner.train_step(batch, optimizer)["pretraining"] == 1.0
    after = dict(learner.named_parameters())
    assert not torch.equal(before["encoder.features.0.0.weight"], after["encoder.features.0.0.weight"])
    assert torch.equal(before["classifier.weight"], after["classifier.weight"])  # untouched in phase 1
    assert not learner.pretraining and "pretraining" not in learner.train_step(batch, optimizer)
    assert torch.equal(
        after["encoder.features.0.0.weight"], dict(learner.named_parameters())["encoder.features.0.0.weight"]
    )


def test_worst_class_is_the_lowest_accuracy_then_the_highest_loss():
    # Two tasks, 3 ways, 2 queries per class; logits written so per-class accuracies are known.
    query_y = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2]])
    right, wrong_bad = [5.0, 0.0, 0.0], [0.0, 9.0, 0.0]
    rows = torch.tensor(
        [
            # task 0: class 0 all right, class 1 half right, class 2 half right but wrong far more confidently
            [right, right, [0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0], wrong_bad],
            # task 1: class 1 all wrong but mildly; class 0 half right with a larger loss: accuracy decides
            [wrong_bad, right, [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 5.0], [0.0, 0.0, 5.0]],
        ]
    )
    assert worst_classes(rows, query_y, 3).tolist() == [2, 1]


def test_hard_classes_come_from_the_failed_classes_and_are_topped_up_when_too_few():
    learner = tiny(hard_tasks=True)
    learner.set_train_classes(10)
    learner.record_hard_classes(torch.tensor([7, 7, 4]))
    assert sorted(learner.hard_task_classes.tolist()) == [4, 7]
    for _ in range(5):
        learner.record_hard_classes(torch.tensor([6, 1, 9, 1]))
        chosen = learner.hard_task_classes.tolist()
        assert len(set(chosen)) == 2 and set(chosen) <= {1, 6, 9}
        learner.record_hard_classes(torch.tensor([3, 3]))
        chosen = learner.hard_task_classes.tolist()
        assert chosen[0] == 3 and chosen[1] != 3 and 0 <= chosen[1] < 10


class RecordingSource:
    """A task source that remembers the classes it was asked for and returns a fixed batch of them."""

    def __init__(self):
        self.requests = []

    def sample_with_classes(self, classes):
        self.requests.append(classes)
        batch = image_batch(seed=len(self.requests) + 10, tasks=1)
        return EpisodeBatch(
            *(getattr(batch, f) for f in ("support_x", "support_y", "query_x", "query_y")),
            2,
            2,
            2,
            torch.tensor(classes),
        )


def test_hard_task_of_the_worst_classes_joins_the_next_meta_batch():
    learner, source = tiny(hard_tasks=True), RecordingSource()
    learner.set_train_classes(4)
    learner.set_task_source(source)
    optimizer = torch.optim.Adam(learner.parameters(), 1e-2)
    batch = image_batch(seed=1)
    expected = worst_classes(learner.adapted_logits(batch, 2).detach(), batch.query_y, 2)
    failed = set(batch.class_ids.gather(1, expected[:, None]).squeeze(1).tolist())
    first = learner.train_step(batch, optimizer)
    assert (
        source.requests == [] and "hard_task_accuracy" not in first
    )  # nothing recorded before the first batch
    second_batch = image_batch(seed=2)
    second = learner.train_step(second_batch, optimizer)
    (request,) = source.requests
    assert failed <= set(request[0]) and len(set(request[0])) == 2
    assert "hard_task_accuracy" in second
    # The update used the hard task: the same step without it gives other parameters.
    again, plain = tiny(hard_tasks=True), tiny()
    again.set_train_classes(4)
    again.set_task_source(RecordingSource())
    for learner_copy in (again, plain):
        opt = torch.optim.Adam(learner_copy.parameters(), 1e-2)
        learner_copy.train_step(batch, opt)
        learner_copy.train_step(second_batch, opt)
    torch.testing.assert_close(again.scales[0], learner.scales[0])
    assert not torch.equal(plain.scales[0], learner.scales[0])


def test_scaling_and_shifting_changes_the_features_where_a_batch_norm_follows():
    """Batch norm with batch statistics normalises away a per-filter scale and shift of the convolution before
    it; SS on the batch norm's output does change the features (and its gradient is not zero)."""
    learner, batch = tiny(), image_batch()
    images = torch.cat([batch.support_x[0], batch.query_x[0]])
    encoder = learner.encoder
    conv_scaled = {n: p.detach() for n, p in encoder.named_parameters()}
    conv_scaled["features.0.0.weight"] = conv_scaled["features.0.0.weight"] * 2.0
    conv_scaled["features.0.0.bias"] = conv_scaled["features.0.0.bias"] + 0.5
    plain = encoder(images)
    # equal but for the normalisation's eps
    torch.testing.assert_close(
        torch.func.functional_call(encoder, conv_scaled, (images,)), plain, atol=1e-3, rtol=0
    )
    ss = torch.func.functional_call(encoder, learner.scaled_and_shifted(), (images,))
    assert (ss - plain).abs().max() > 0.05
    assert learner.scaled == ["features.0.1.weight", "features.1.1.weight"]
    assert learner.shifted == ["features.0.1.bias", "features.1.1.bias"]
    learner.meta_loss(batch)[0].backward()
    assert all(float(p.grad.abs().max()) > 1e-6 for p in [*learner.scales, *learner.shifts])


def test_resnet12_batch_norms_are_scaled_and_shifted():
    """ResNet-12's 16 convolutions (no bias) each feed a batch norm: SS scales and shifts those 16 outputs."""
    torch.manual_seed(0)
    learner = MetaTransferLearner(
        ResNet12(1, widths=(2, 2, 3, 3)), ways=2, pretrain_iterations=0, inner_steps=1
    )
    assert len(learner.scales) == len(learner.shifts) == 16
    assert (
        learner.scaled[0] == "features.0.bn1.weight" and learner.shifted[-1] == "features.3.shortcut.1.bias"
    )
    with torch.no_grad():
        learner.scales[0].fill_(2.0)
    params = learner.scaled_and_shifted()
    torch.testing.assert_close(params["features.0.bn1.weight"], 2.0 * learner.encoder.features[0].bn1.weight)
    torch.testing.assert_close(params["features.0.conv1.weight"], learner.encoder.features[0].conv1.weight)
    batch = random_image_batch(0, 2, class_ids=torch.tensor([[0, 3], [2, 1]]), size=16, dtype=torch.float32)
    loss, _ = learner.meta_loss(batch)
    loss.backward()
    assert all(s.grad is not None and torch.isfinite(s.grad).all() for s in learner.scales)


def test_a_convolution_without_batch_norm_is_scaled_and_shifted_itself():
    encoder = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Conv2d(3, 2, 3, bias=False)
    )
    scaled, shifted, filters = scaled_and_shifted_tensors(encoder)
    assert scaled == ["0.weight", "2.weight"] and shifted == ["0.bias", None] and filters == [3, 2]


def test_miniimagenet_config_runs_resnet12_on_synthetic_data(tmp_path):
    overrides = synthetic_run_overrides(
        tmp_path,
        "model.widths=[2, 2, 3, 3]",
        "learner_options.pretrain_iterations=1",
        "learner_options.inner_steps=2",
        "learner_options.eval_inner_steps=2",
        "iterations=3",
    )
    config = load_config(FewShotConfig, config_file("fewshot/mtl-miniimagenet-5w1s"), overrides)
    assert config.model.kind == "resnet12" and config.learner_options["hard_tasks"]
    result = runner.train(config, progress=False, echo=lambda _: None)
    assert 0.0 <= result["mean"] <= 1.0 and result["iterations"] == 3


@pytest.mark.parametrize("hard_tasks", [False, True])
def test_shipped_config_resumes_across_the_phase_switch(tmp_path, monkeypatch, hard_tasks):
    from metarl.training import RunDir, load_checkpoint, loop, read_metrics

    overrides = synthetic_run_overrides(
        tmp_path,
        "model.hidden=4",
        "learner_options.pretrain_iterations=3",
        "learner_options.inner_steps=2",
        "iterations=6",
        "meta_batch_size=2",
        "log_every=1",
        f"learner_options.hard_tasks={str(hard_tasks).lower()}",
    )
    config = load_config(FewShotConfig, config_file("fewshot/mtl-omniglot-5w1s"), overrides)
    full = runner.train(config, run_dir=RunDir.create(tmp_path, "full"), progress=False, echo=lambda _: None)
    killed = RunDir.create(tmp_path, "killed")
    real_save = loop.save_checkpoint

    class Killed(Exception):
        pass

    def save_or_die(path, state):
        if state["iteration"] == 6:
            raise Killed
        real_save(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", save_or_die)
    with pytest.raises(Killed):
        runner.train(config, run_dir=killed, progress=False, echo=lambda _: None)
    assert load_checkpoint(killed.checkpoint_path)["iteration"] == 4  # after the switch at 3
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    resumed = runner.train(config, run_dir=killed, resume=True, progress=False, echo=lambda _: None)
    assert resumed["mean"] == full["mean"]
    rows = {run: read_metrics(tmp_path / run / "metrics.jsonl") for run in ("full", "killed")}
    losses = {
        run: {r["step"]: r["losses/meta_loss"] for r in rows[run] if "losses/meta_loss" in r} for run in rows
    }
    assert len(losses["full"]) == 6 and losses["full"] == losses["killed"]
    hard = [r for r in rows["full"] if "losses/hard_task_accuracy" in r]
    assert len(hard) == (
        2 if hard_tasks else 0
    )  # iterations 5 and 6: after the switch at 3 and a first batch
