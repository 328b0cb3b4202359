"""Episode sampler invariants on a dataset whose pixels say which sample they are."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from metarl.errors import UserError
from metarl.supervised.data import ClassIndexedDataset, EpisodeSampler


def identity_dataset(class_sizes: list[int]) -> ClassIndexedDataset:
    """Image i has pixel (0, 0, 0) = its class and (0, 0, 1) = its index within the class."""
    labels = np.repeat(np.arange(len(class_sizes)), class_sizes)
    within = np.concatenate([np.arange(size) for size in class_sizes])
    images = np.zeros((len(labels), 1, 2, 2), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = labels, within
    shuffled = np.random.default_rng(1).permutation(len(labels))  # from_labels must regroup them
    return ClassIndexedDataset.from_labels(
        images[shuffled], labels[shuffled], [f"c{c}" for c in range(len(class_sizes))]
    )


def decode(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(class, within-class index) of every image in a (..., 1, 2, 2) float tensor."""
    pixels = (x[..., 0, 0, :] * 255).round().long().numpy()
    return pixels[..., 0], pixels[..., 1]


def test_from_labels_groups_by_class_and_keeps_order():
    dataset = identity_dataset([3, 5, 2])
    assert dataset.num_classes == 3 and len(dataset) == 10
    assert dataset.class_sizes.tolist() == [3, 5, 2]
    assert dataset.class_offsets.tolist() == [0, 3, 8, 10]
    for c in range(3):
        images = dataset.class_images(c)
        assert (images[:, 0, 0, 0] == c).all()
        assert np.array_equal(dataset.images[dataset.indices_of(c)], images)
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2]
    assert dataset.image_shape == (1, 2, 2)


@pytest.mark.parametrize("ways,shots,queries,tasks", [(5, 1, 15, 4), (3, 5, 0, 2), (7, 2, 3, 1)])
def test_episodes_have_distinct_classes_and_samples_with_balanced_labels(ways, shots, queries, tasks):
    sampler = EpisodeSampler(identity_dataset([20] * 12), ways, shots, queries, tasks_per_batch=tasks, seed=3)
    for _ in range(20):
        batch = sampler.sample()
        assert (
            batch.support_x.shape == (tasks, ways * shots, 1, 2, 2) and batch.support_x.dtype == torch.float32
        )
        assert batch.query_x.shape == (tasks, ways * queries, 1, 2, 2)
        assert batch.support_y.dtype == torch.int64 and batch.support_y.shape == (tasks, ways * shots)
        assert (batch.ways, batch.shots, batch.queries, batch.num_tasks) == (ways, shots, queries, tasks)
        assert torch.equal(batch.support_y, torch.arange(ways).repeat_interleave(shots).expand(tasks, -1))
        assert torch.equal(batch.query_y, torch.arange(ways).repeat_interleave(queries).expand(tasks, -1))
        support_class, support_within = decode(batch.support_x)
        query_class, query_within = decode(batch.query_x)
        for t in range(tasks):
            classes = support_class[t].reshape(ways, shots)
            assert (classes == classes[:, :1]).all(), "one label must mean one dataset class"
            assert len(set(classes[:, 0])) == ways, "the N classes of a task must be distinct"
            if queries:
                assert (query_class[t].reshape(ways, queries) == classes[:, :1]).all()
            for label in range(ways):
                drawn = list(support_within[t].reshape(ways, shots)[label])
                drawn += list(query_within[t].reshape(ways, queries)[label]) if queries else []
                assert len(set(drawn)) == shots + queries, "support and query samples must be distinct"


def test_classes_and_samples_are_drawn_uniformly_and_labels_are_shuffled():
    sampler = EpisodeSampler(
        identity_dataset([6] * 10), ways=5, shots=1, queries=1, tasks_per_batch=50, seed=0
    )
    class_counts, within_counts, label0_classes = np.zeros(10), np.zeros(6), set()
    for _ in range(40):
        support_class, support_within = decode(sampler.sample().support_x)
        np.add.at(class_counts, support_class.ravel(), 1)
        np.add.at(within_counts, support_within.ravel(), 1)
        label0_classes.update(support_class[:, 0].tolist())
    # 10,000 class draws: each class expects 1000 (sd ~ 28); each within-class index 1667 (sd ~ 37).
    assert np.abs(class_counts - 1000).max() < 150, class_counts
    assert np.abs(within_counts - 10000 / 6).max() < 200, within_counts
    assert label0_classes == set(range(10)), "label 0 must be any class, not always the smallest id"


def test_unequal_class_sizes_never_read_past_a_class():
    sizes = [3, 9, 4, 3, 30]
    sampler = EpisodeSampler(identity_dataset(sizes), ways=4, shots=2, queries=1, tasks_per_batch=30, seed=5)
    for _ in range(20):
        batch = sampler.sample()
        support_class, support_within = decode(batch.support_x)
        query_class, query_within = decode(batch.query_x)
        for classes, within in ((support_class, support_within), (query_class, query_within)):
            assert (within < np.asarray(sizes)[classes]).all()


def test_same_seed_same_batches_and_different_seed_different_batches():
    dataset = identity_dataset([20] * 12)
    first = EpisodeSampler(dataset, 5, 1, 5, tasks_per_batch=3, seed=11)
    second = EpisodeSampler(dataset, 5, 1, 5, tasks_per_batch=3, seed=11)
    other = EpisodeSampler(dataset, 5, 1, 5, tasks_per_batch=3, seed=12)
    for a, b, c in itertools.islice(zip(first, second, other, strict=True), 5):
        assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
        assert not torch.equal(a.query_x, c.query_x)


def test_state_dict_resumes_the_stream():
    dataset = identity_dataset([20] * 12)
    sampler = EpisodeSampler(dataset, 5, 2, 3, tasks_per_batch=2, seed=4)
    sampler.sample()
    state = sampler.state_dict()
    expected = [sampler.sample() for _ in range(3)]
    resumed = EpisodeSampler(dataset, 5, 2, 3, tasks_per_batch=2, seed=999)
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.sample()
        assert torch.equal(got.support_x, want.support_x) and torch.equal(got.query_x, want.query_x)


def test_pixels_are_scaled_to_unit_interval():
    images = np.array([[[[0, 255], [128, 1]]]] * 4, dtype=np.uint8)
    dataset = ClassIndexedDataset(images, [0, 2, 4], ["a", "b"])
    batch = EpisodeSampler(dataset, 2, 1, 1, seed=0).sample()
    expected = torch.tensor([[0.0, 1.0], [128 / 255, 1 / 255]])
    assert torch.allclose(batch.support_x[0, 0, 0], expected)


def test_too_few_classes_or_samples_give_clear_errors():
    dataset = identity_dataset([5, 5, 2])
    with pytest.raises(ValueError, match="need at least 4 classes.*has 3"):
        EpisodeSampler(dataset, ways=4, shots=1, queries=1)
    with pytest.raises(ValueError, match=r"fewer than shots \+ queries = 4.*'c2' has 2"):
        EpisodeSampler(dataset, ways=2, shots=1, queries=3)
    with pytest.raises(ValueError, match="shots must be an integer >= 1"):
        EpisodeSampler(dataset, ways=2, shots=0, queries=1)
    with pytest.raises(ValueError, match="tasks_per_batch"):
        EpisodeSampler(dataset, ways=2, shots=1, queries=1, tasks_per_batch=0)


def test_dataset_validation_errors():
    images = np.zeros((4, 1, 2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        ClassIndexedDataset(images.astype(np.float32), [0, 4], ["a"])
    with pytest.raises(ValueError, match="class_offsets"):
        ClassIndexedDataset(images, [0, 3], ["a"])
    with pytest.raises(ValueError, match="class 1 has 0 samples"):
        ClassIndexedDataset(images, [0, 2, 2, 4], ["a", "b", "c"])
    with pytest.raises(ValueError, match="class names"):
        ClassIndexedDataset(images, [0, 2, 4], ["a"])


def test_sample_with_classes_draws_fresh_distinct_samples_of_exactly_those_classes():
    sampler = EpisodeSampler(identity_dataset([6, 9, 7, 8]), 3, 1, 2, tasks_per_batch=4, seed=0)
    batch = sampler.sample_with_classes([[3, 0, 2]])
    assert batch.num_tasks == 1 and batch.class_ids.tolist() == [[3, 0, 2]]
    support_class, support_within = decode(batch.support_x)
    query_class, query_within = decode(batch.query_x)
    assert support_class.tolist() == [[3, 0, 2]] and query_class.tolist() == [[3, 3, 0, 0, 2, 2]]
    for j in range(3):  # no image twice within a class
        assert len({support_within[0, j], *query_within[0, 2 * j : 2 * j + 2]}) == 3
    # From the sampler's one stream: the next regular batch differs from that of an untouched sampler.
    untouched = EpisodeSampler(identity_dataset([6, 9, 7, 8]), 3, 1, 2, tasks_per_batch=4, seed=0)
    assert not torch.equal(sampler.sample().support_x, untouched.sample().support_x)
    for bad in ([[0, 0, 1]], [[0, 1]], [[0, 1, 4]]):
        with pytest.raises(ValueError, match="class"):
            sampler.sample_with_classes(bad)


def test_grouped_episodes_take_all_their_classes_from_one_group_drawn_uniformly():
    # groups a (6 classes), b (4), c (2: too small for 3-way episodes)
    groups = ["a"] * 6 + ["b"] * 4 + ["c"] * 2
    sampler = EpisodeSampler(identity_dataset([4] * 12), 3, 1, 1, tasks_per_batch=50, seed=0, groups=groups)
    seen = {"a": 0, "b": 0}
    for _ in range(20):
        classes = sampler.sample().class_ids.numpy()
        assert (np.sort(classes, axis=1)[:, 1:] != np.sort(classes, axis=1)[:, :-1]).all()  # distinct
        for row in classes:
            (group,) = {groups[c] for c in row}
            seen[group] += 1
    assert abs(seen["a"] - seen["b"]) < 100  # groups drawn uniformly (500 each), not by their classes (6:4)
    first, again = (
        EpisodeSampler(
            identity_dataset([4] * 12), 3, 1, 1, tasks_per_batch=50, seed=0, groups=groups
        ).sample()
        for _ in range(2)
    )
    assert torch.equal(first.class_ids, again.class_ids)  # seeded as without groups


def test_grouped_sampling_errors_name_the_fix():
    dataset = identity_dataset([4] * 4)
    with pytest.raises(UserError, match="no group has 3 classes"):
        EpisodeSampler(dataset, 3, 1, 1, groups=["a", "a", "b", "b"])
    with pytest.raises(UserError, match="3 group names for 4 classes"):
        EpisodeSampler(dataset, 2, 1, 1, groups=["a", "a", "b"])
