"""Datasets (offline first) and the client partitioners: IID, Dirichlet label skew, shards."""

import dataclasses
import gzip
import pathlib
import pickle

import numpy as np

from prunefl_lite.validate import check_fraction, check_int, check_number

OFFLINE = ("digits", "breast_cancer")
ON_DISK = ("mnist", "fashion_mnist", "cifar10")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A classification dataset split into train, validation and test arrays.

    Tune (learning rates, schedules, sparsity) on the validation split; report the test split.

    Attributes:
        name: The name passed to `load_dataset`.
        x_train: Float32 features; images keep their (height, width, channels) shape.
        y_train: Int64 labels in [0, num_classes).
        x_test: Float32 test features.
        y_test: Int64 test labels.
        num_classes: Number of classes.
        description: One line on where the data come from.
        x_val: Float32 validation features (held out of x_train; may have 0 rows).
        y_val: Int64 validation labels.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    description: str
    x_val: np.ndarray = None
    y_val: np.ndarray = None

    @property
    def input_shape(self):
        """Shape of one example, e.g. (8, 8, 1) for digits."""
        return self.x_train.shape[1:]


def load_dataset(name, *, test_fraction=0.2, validation_fraction=0.2, seed=0, cache_dir=None):
    """Load a dataset by name, scaled to float32 and split into train, validation and test.

    "digits" (8x8 handwritten digits, 1,797 images) and "breast_cancer" (569 clinical rows,
    30 features, standardised with the training rows' statistics) ship with scikit-learn and
    always work offline; they get a stratified split with `test_fraction` and `seed`.
    Every dataset then holds out `validation_fraction` of its training rows (stratified,
    seeded) as the validation split: choose settings on it, report test accuracy only.
    "mnist", "fashion_mnist" and "cifar10" use their official train/test split and are read
    from Keras' on-disk cache (`~/.keras/datasets` or `cache_dir`) or, if missing there,
    downloaded by `tf.keras.datasets`; with neither, a `FileNotFoundError` says what to fetch.

    Args:
        name: One of "digits", "breast_cancer", "mnist", "fashion_mnist", "cifar10".
        test_fraction: Fraction of the offline datasets held out for testing, in (0, 1).
        validation_fraction: Fraction of the training rows held out for validation, in
            [0, 1); 0 gives an empty validation split.
        seed: Seed of the offline datasets' stratified split.
        cache_dir: Folder holding Keras' dataset files (default `~/.keras/datasets`).

    Returns:
        A `Dataset`.

    Example:
        >>> ds = load_dataset("digits")
        >>> ds.x_train.shape, ds.x_val.shape, ds.x_test.shape, ds.num_classes
        ((1149, 8, 8, 1), (288, 8, 8, 1), (360, 8, 8, 1), 10)
    """
    check_fraction("validation_fraction", validation_fraction)
    if name in OFFLINE:
        check_number("test_fraction", test_fraction, 0, 1, low_open=True, high_open=True)
        ds = _load_sklearn(name, test_fraction, seed)
    elif name in ON_DISK:
        ds = _load_keras(name, pathlib.Path(cache_dir or pathlib.Path.home() / ".keras/datasets"))
    else:
        raise ValueError(f"name must be one of {OFFLINE + ON_DISK}, got {name!r}")
    ds = _hold_out_validation(ds, validation_fraction, seed)
    return _standardise(ds) if name == "breast_cancer" else ds


def _standardise(ds):
    """Standardise features with the training rows' mean and std only (no leakage)."""
    mean, std = ds.x_train.mean(axis=0), ds.x_train.std(axis=0) + 1e-8
    scale = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return dataclasses.replace(
        ds, x_train=scale(ds.x_train), x_val=scale(ds.x_val), x_test=scale(ds.x_test)
    )


def _hold_out_validation(ds, fraction, seed):
    """Move a stratified, seeded `fraction` of the training rows into the validation split."""
    from sklearn.model_selection import train_test_split

    if fraction == 0:
        empty = ds.x_train[:0], ds.y_train[:0]
        return dataclasses.replace(ds, x_val=empty[0], y_val=empty[1])
    x_train, x_val, y_train, y_val = train_test_split(
        ds.x_train, ds.y_train, test_size=fraction, stratify=ds.y_train, random_state=seed
    )
    return dataclasses.replace(ds, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)


def _load_sklearn(name, test_fraction, seed):
    """Load a scikit-learn bundled dataset with a stratified, seeded split."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    if name == "digits":
        bunch = datasets.load_digits()
        x = (bunch.images / 16.0).astype(np.float32)[..., None]
        text = "scikit-learn digits: 1,797 real handwritten digits, 8x8 grey levels in [0, 1]"
    else:
        bunch = datasets.load_breast_cancer()
        x = bunch.data.astype(np.float32)
        text = "scikit-learn breast cancer (Wisconsin): 569 real tumours, 30 standardised features"
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    num_classes = int(y.max()) + 1
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes, text)


def _load_keras(name, cache_dir):
    """Read a Keras-format dataset from disk, downloading it first if it is missing."""
    reader = {"mnist": _read_mnist, "fashion_mnist": _read_fashion, "cifar10": _read_cifar10}[name]
    try:
        (x_train, y_train), (x_test, y_test) = reader(cache_dir)
    except FileNotFoundError:
        (x_train, y_train), (x_test, y_test) = _download(name, cache_dir)
    x_train, x_test = (_as_images(x) for x in (x_train, x_test))
    y_train, y_test = (np.asarray(y, dtype=np.int64).reshape(-1) for y in (y_train, y_test))
    text = f"{name} (official train/test split), pixels scaled to [0, 1]"
    return Dataset(name, x_train, y_train, x_test, y_test, 10, text)


def _as_images(x):
    """uint8 images to float32 in [0, 1], with a channel axis."""
    x = np.asarray(x, dtype=np.float32) / 255.0
    return x[..., None] if x.ndim == 3 else x


def _read_mnist(cache_dir):
    """Read Keras' mnist.npz."""
    with np.load(cache_dir / "mnist.npz") as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def _read_idx(path):
    """Read one gzipped IDX file (the format of MNIST and Fashion-MNIST)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_fashion(cache_dir):
    """Read Keras' fashion-mnist folder of four gzipped IDX files."""
    folder = cache_dir / "fashion-mnist"
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    x_train, y_train, x_test, y_test = (_read_idx(folder / f) for f in files)
    return (x_train, y_train), (x_test, y_test)


def _read_cifar10(cache_dir):
    """Read Keras' cifar-10-batches-py folder (pickled batches, channels-first rows)."""
    folder = cache_dir / "cifar-10-batches-py"

    def batch(file_name):
        with open(folder / file_name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        return d[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.array(d[b"labels"])

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_train, y_train = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return (x_train, y_train), batch("test_batch")


def _download(name, cache_dir):
    """Download through tf.keras.datasets; explain what to do when there is no network."""
    import tensorflow as tf

    try:
        return getattr(tf.keras.datasets, name).load_data()
    except Exception as error:  # no network, proxy, bad file: all end the same way
        raise FileNotFoundError(
            f"{name} is not on disk in {cache_dir} and could not be downloaded ({error}). "
            f"Copy Keras' {name} files into {cache_dir} (as tf.keras.datasets.{name}.load_data() "
            "stores them on a machine with a network), or use the offline 'digits' dataset."
        ) from error


def _check_partition_args(y, num_clients):
    """Validate the arguments shared by the partitioners and return y as an int array."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"y must be a non-empty 1-d array of labels, got shape {y.shape}")
    check_int("num_clients", num_clients, 1, len(y))
    return y


def partition_iid(y, num_clients, seed=0):
    """Split example indices uniformly at random into `num_clients` near-equal parts.

    Args:
        y: Labels (only their number matters here).
        num_clients: Number of clients, in [1, len(y)].
        seed: Seed of the shuffle.

    Returns:
        A list of `num_clients` disjoint, sorted int64 index arrays covering range(len(y));
        sizes differ by at most one.

    Example:
        >>> parts = partition_iid(np.zeros(10), 3, seed=0)
        >>> [len(p) for p in parts]
        [4, 3, 3]
    """
    y = _check_partition_args(y, num_clients)
    order = np.random.default_rng(seed).permutation(len(y))
    return [np.sort(part).astype(np.int64) for part in np.array_split(order, num_clients)]


def partition_dirichlet(y, num_clients, alpha=0.5, seed=0, max_tries=100):
    """Label-skewed split: each class is spread over clients with Dirichlet(alpha) proportions.

    This is the per-class Dirichlet split of Yurochkin et al. (2019) and Li et al. (2022,
    NIID-Bench): small `alpha` gives each client few classes, large `alpha` approaches IID.
    (Hsu et al. (2019) draw the other way round: one Dirichlet mix of classes per client.)
    A draw that leaves a client empty is redrawn (up to
    `max_tries` times, then `ValueError`), so every client has at least one example.

    Args:
        y: Integer labels.
        num_clients: Number of clients, in [1, len(y)].
        alpha: Concentration, > 0.
        seed: Seed of the draws.
        max_tries: Redraws allowed before giving up on a split with no empty client.

    Returns:
        A list of `num_clients` disjoint, sorted, non-empty int64 index arrays covering y.

    Example:
        >>> y = np.repeat(np.arange(3), 20)
        >>> parts = partition_dirichlet(y, 4, alpha=0.5, seed=0)
        >>> sum(len(p) for p in parts), min(len(p) for p in parts) > 0
        (60, True)
    """
    y = _check_partition_args(y, num_clients)
    check_number("alpha", alpha, 0, low_open=True)
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts = [[] for _ in range(num_clients)]
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(members))
            for client, chunk in enumerate(np.split(members, cuts.astype(int))):
                parts[client].extend(chunk)
        if all(parts):
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise ValueError(
        f"partition_dirichlet left a client empty in {max_tries} draws (alpha={alpha}, "
        f"num_clients={num_clients}, {len(y)} examples): use fewer clients or a larger alpha"
    )


def partition_shards(y, num_clients, shards_per_client=2, seed=0):
    """McMahan et al.'s pathological non-IID split: sort by label, deal out equal shards.

    Args:
        y: Integer labels.
        num_clients: Number of clients, in [1, len(y) // shards_per_client].
        shards_per_client: Shards (label-sorted runs of examples) given to each client, >= 1.
        seed: Seed of the tie-breaking shuffle and of the shard assignment.

    Returns:
        A list of `num_clients` disjoint, sorted, non-empty int64 index arrays covering y.

    Example:
        >>> y = np.repeat(np.arange(5), 4)
        >>> parts = partition_shards(y, 5, shards_per_client=2, seed=0)
        >>> [len(np.unique(y[p])) <= 2 for p in parts]
        [True, True, True, True, True]
    """
    y = _check_partition_args(y, num_clients)
    check_int("shards_per_client", shards_per_client, 1, len(y) // num_clients)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(y))
    by_label = shuffled[np.argsort(y[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_clients * shards_per_client)
    dealt = rng.permutation(len(shards)).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([shards[s] for s in row])).astype(np.int64) for row in dealt]


def label_counts(y, parts, num_classes=None):
    """Count each client's examples per class.

    Args:
        y: Integer labels.
        parts: Index arrays, one per client (as returned by the partitioners).
        num_classes: Number of classes (default: max label + 1).

    Returns:
        An int array of shape (num_clients, num_classes).

    Example:
        >>> label_counts(np.array([0, 1, 1, 2]), [np.array([0, 1]), np.array([2, 3])])
        array([[1, 1, 0],
               [0, 1, 1]])
    """
    y = np.asarray(y)
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    return np.stack([np.bincount(y[p], minlength=num_classes) for p in parts])


def split_clients(x, y, parts):
    """Turn index arrays into the `(x, y)` pairs that `run_fedavg` takes as clients.

    Example:
        >>> clients = split_clients(np.arange(6.0), np.arange(6), [np.array([0, 2]), np.array([5])])
        >>> [c[1].tolist() for c in clients]
        [[0, 2], [5]]
    """
    return [(x[p], y[p]) for p in parts]
