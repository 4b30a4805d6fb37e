"""The IDX reader on good, truncated, wrong-magic, wrong-dimension and missing files, and the
Fashion-MNIST loader's checks on top of it (each error names the file and what is wrong)."""
import gzip

import numpy as np
import pytest

from training.fashion import FASHION_LABELS, load_fashion_split, load_part
from training.idx import IdxError, read_idx, write_idx


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


def write_fashion_dir(directory, train=6, test=4):
    rng = np.random.default_rng(1)
    for prefix, n in (("train", train), ("t10k", test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return directory


@pytest.mark.parametrize("name", ["x-idx3-ubyte.gz", "x-idx3-ubyte"])
def test_a_good_file_reads_back_exactly(tmp_path, images, name):
    write_idx(tmp_path / name, images)
    got = read_idx(tmp_path / name, 3, (None, 28, 28))
    assert got.dtype == np.uint8 and got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got, images)


def test_the_header_is_big_endian_idx(tmp_path, images):
    write_idx(tmp_path / "x.idx", images)
    raw = (tmp_path / "x.idx").read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3])
    assert [int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12)] == [5, 28, 28]
    assert raw[16:] == images.tobytes()


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(IdxError, match=r"nothere-idx3-ubyte.gz: file not found .*apt-get install dataset-fashion-mnist"):
        read_idx(tmp_path / "nothere-idx3-ubyte.gz", 3)


@pytest.mark.parametrize("cut, why", [(-1, r"truncated: 3935 bytes, expected 3936 for sizes \(5, 28, 28\)"),
                                      (10, r"truncated: 10 bytes, shorter than the 16-byte header"),
                                      (2, r"truncated: 2 bytes, shorter than the 4-byte IDX magic")])
def test_a_truncated_file_is_named_with_what_is_missing(tmp_path, images, cut, why):
    write_idx(tmp_path / "x.gz", images)
    raw = gzip.decompress((tmp_path / "x.gz").read_bytes())
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw[:cut]))
    with pytest.raises(IdxError, match=rf"x.gz: {why}"):
        read_idx(tmp_path / "x.gz", 3)


def test_trailing_bytes_are_an_error_too(tmp_path, images):
    write_idx(tmp_path / "x", images)
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes() + b"\0")
    with pytest.raises(IdxError, match=r"x: trailing bytes: 3937 bytes, expected 3936"):
        read_idx(tmp_path / "x", 3)


def test_a_wrong_magic_number_is_named(tmp_path, images):
    write_idx(tmp_path / "x", images)
    raw = bytearray((tmp_path / "x").read_bytes())
    raw[2] = 0x0D  # float32 instead of unsigned bytes
    (tmp_path / "x").write_bytes(bytes(raw))
    with pytest.raises(IdxError, match=r"x: wrong magic number 0x00000d03: expected 0x00000803"):
        read_idx(tmp_path / "x", 3)


def test_a_corrupt_gzip_is_named(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(IdxError, match=r"x.gz: not a readable gzip file"):
        read_idx(tmp_path / "x.gz", 3)


def test_wrong_dimensions_are_named(tmp_path, images):
    write_idx(tmp_path / "labels", images[:, 0, 0])
    with pytest.raises(IdxError, match=r"labels: 1 dimensions, expected 3"):
        read_idx(tmp_path / "labels", 3)
    write_idx(tmp_path / "small", images[:, :27, :27])
    with pytest.raises(IdxError, match=r"small: dimension 1 has size 27, expected 28"):
        read_idx(tmp_path / "small", 3, (None, 28, 28))


def test_the_loader_checks_counts_and_labels(tmp_path):
    directory = write_fashion_dir(tmp_path)
    with pytest.raises(IdxError, match=r"train-images-idx3-ubyte.gz: dimension 0 has size 6, expected 60000"):
        load_fashion_split(directory=directory)
    split = load_fashion_split(directory=directory, strict=False)
    assert split.train_images.shape == (6, 28, 28) and split.test_images.shape == (4, 28, 28)
    assert split.labels == FASHION_LABELS and split.preprocessing["resize"] == [28, 28]
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.arange(3, dtype=np.uint8))
    with pytest.raises(IdxError, match=r"t10k-labels-idx1-ubyte.gz: dimension 0 has size 3, expected 4"):
        load_part("test", directory)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 10], dtype=np.uint8))
    with pytest.raises(IdxError, match=r"t10k-labels-idx1-ubyte.gz: label 10 out of range 0..9"):
        load_part("test", directory)


def test_the_installed_data_set_is_complete_and_balanced():
    split = load_fashion_split()
    assert split.train_images.shape == (60000, 28, 28) and split.test_images.shape == (10000, 28, 28)
    assert np.all(np.bincount(split.train_labels) == 6000) and np.all(np.bincount(split.test_labels) == 1000)
    assert split.preprocessing["mean"] == [pytest.approx(0.2860, abs=1e-4)]
    assert split.preprocessing["std"] == [pytest.approx(0.3530, abs=1e-4)]
