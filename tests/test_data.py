import gzip
import pickle

import numpy as np
import pytest

from prunefl_lite import data

Y = np.repeat(np.arange(10), 30)  # 300 labels, 10 classes


@pytest.mark.parametrize(
    "partition",
    [
        lambda seed: data.partition_iid(Y, 7, seed=seed),
        lambda seed: data.partition_dirichlet(Y, 7, alpha=0.3, seed=seed),
        lambda seed: data.partition_shards(Y, 7, shards_per_client=2, seed=seed),
    ],
    ids=["iid", "dirichlet", "shards"],
)
def test_partitions_are_disjoint_covers_non_empty_and_reproducible(partition):
    parts = partition(0)
    joined = np.concatenate(parts)
    assert len(parts) == 7
    assert np.array_equal(np.sort(joined), np.arange(len(Y)))  # disjoint and covering
    assert min(len(p) for p in parts) > 0
    assert all(np.array_equal(a, b) for a, b in zip(parts, partition(0)))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, partition(1)))


def test_dirichlet_skew_grows_as_alpha_shrinks():
    def classes_per_client(alpha):
        counts = data.label_counts(Y, data.partition_dirichlet(Y, 10, alpha=alpha, seed=0))
        return np.mean((counts > 0).sum(axis=1))

    assert classes_per_client(0.1) < classes_per_client(100.0)


def test_shards_give_each_client_at_most_shards_per_client_classes():
    counts = data.label_counts(Y, data.partition_shards(Y, 10, shards_per_client=2, seed=0))
    assert ((counts > 0).sum(axis=1) <= 2).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: data.partition_iid(Y, 0), "num_clients must be an integer in [1, 300], got 0"),
        (lambda: data.partition_iid(Y, 301), "num_clients must be an integer in [1, 300]"),
        (lambda: data.partition_iid([], 2), "y must be a non-empty 1-d array"),
        (lambda: data.partition_dirichlet(Y, 5, alpha=0), "alpha must be a number in (0, inf)"),
        (lambda: data.partition_shards(Y, 10, shards_per_client=31),
         "shards_per_client must be an integer in [1, 30]"),
        (lambda: data.partition_dirichlet(Y, 300, alpha=0.01, max_tries=2), "left a client empty"),
        (lambda: data.load_dataset("imagenet"), "name must be one of"),
        (lambda: data.load_dataset("digits", test_fraction=1.0), "test_fraction must be a number in (0, 1)"),
        (lambda: data.load_dataset("digits", validation_fraction=1.0),
         "validation_fraction must be a number in [0, 1), got 1.0"),
        (lambda: data.load_dataset("digits", validation_fraction=-0.1),
         "validation_fraction must be a number in [0, 1), got -0.1"),
    ],
)
def test_each_validation_rule(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


@pytest.mark.parametrize("name, n, shape, classes", [
    ("digits", 1797, (8, 8, 1), 10), ("breast_cancer", 569, (30,), 2)])
def test_offline_datasets(name, n, shape, classes):
    ds = data.load_dataset(name)
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == n
    assert len(ds.x_val) == np.ceil(0.2 * (len(ds.x_train) + len(ds.x_val)))  # sklearn's rounding
    assert ds.x_val.dtype == np.float32 and ds.y_val.dtype == np.int64
    assert ds.input_shape == shape and ds.num_classes == classes
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    # stratified split: class proportions agree within a few points
    p_train = np.bincount(ds.y_train) / len(ds.y_train)
    p_test = np.bincount(ds.y_test) / len(ds.y_test)
    p_val = np.bincount(ds.y_val) / len(ds.y_val)
    assert np.abs(p_train - p_test).max() < 0.02 and np.abs(p_train - p_val).max() < 0.02


def test_validation_split_is_disjoint_from_train_and_optional():
    ds = data.load_dataset("digits")
    flat = lambda x: {row.tobytes() for row in x.reshape(len(x), -1)}  # noqa: E731
    assert not flat(ds.x_val) & flat(ds.x_train) - flat(ds.x_test)  # no validation row in train
    assert len(data.load_dataset("digits", validation_fraction=0).x_val) == 0


def test_breast_cancer_is_standardised_with_training_statistics():
    ds = data.load_dataset("breast_cancer")
    assert np.allclose(ds.x_train.mean(axis=0), 0, atol=1e-4)
    assert not np.allclose(ds.x_test.mean(axis=0), 0, atol=1e-4)
    assert not np.allclose(ds.x_val.mean(axis=0), 0, atol=1e-4)  # validation rows not used


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_keras_npz_from_cache(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (5, 28, 28)), "y_train": np.arange(5),
              "x_test": rng.integers(0, 256, (3, 28, 28)), "y_test": np.arange(3)}
    np.savez(tmp_path / "mnist.npz", **{k: v.astype(np.uint8) for k, v in arrays.items()})
    ds = data.load_dataset("mnist", cache_dir=tmp_path, validation_fraction=0)
    assert ds.x_train.shape == (5, 28, 28, 1) and ds.x_test.shape == (3, 28, 28, 1)
    assert np.allclose(ds.x_train[..., 0] * 255, arrays["x_train"])


def test_fashion_mnist_reads_idx_files_from_cache(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    images, labels = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256, np.array([3, 7])
    for prefix in ("train", "t10k"):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    ds = data.load_dataset("fashion_mnist", cache_dir=tmp_path, validation_fraction=0)
    assert ds.y_train.tolist() == [3, 7] and ds.x_test.shape == (2, 28, 28, 1)
    assert np.allclose(ds.x_train[..., 0] * 255, images)


def test_cifar10_reads_pickled_batches_from_cache(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rows = np.arange(2 * 3072).reshape(2, 3072) % 256
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rows.astype(np.uint8), b"labels": [1, 2]}, f)
    ds = data.load_dataset("cifar10", cache_dir=tmp_path, validation_fraction=0)
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_test.shape == (2, 32, 32, 3)
    # channels-first rows become channels-last images: red plane first
    assert ds.x_train[0, 0, 1, 0] * 255 == pytest.approx(rows[0, 1])


def test_missing_dataset_without_network_explains_what_to_do(tmp_path, monkeypatch):
    import tensorflow as tf

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(tf.keras.datasets.mnist, "load_data", offline)
    with pytest.raises(FileNotFoundError, match="mnist is not on disk") as error:
        data.load_dataset("mnist", cache_dir=tmp_path)
    assert "digits" in str(error.value) and str(tmp_path) in str(error.value)
