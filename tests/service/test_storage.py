import pytest

from service.storage import DirectoryStorage, StorageError


def test_keys_round_trip_and_delete(tmp_path):
    storage = DirectoryStorage(tmp_path / "shared")
    storage.write("jobs/a/render-1/images/x.png", b"png")
    storage.write("jobs/a/render-1/report.json", b"{}")
    source = tmp_path / "weights.safetensors"
    source.write_bytes(b"w" * 1000)
    storage.upload("jobs/a/lora-2/weights.safetensors", source)
    assert storage.read("jobs/a/render-1/images/x.png") == b"png"
    assert storage.keys("jobs/a/") == [
        "jobs/a/lora-2/weights.safetensors",
        "jobs/a/render-1/images/x.png",
        "jobs/a/render-1/report.json",
    ]
    storage.download("jobs/a/lora-2/weights.safetensors", tmp_path / "local" / "w")
    assert (tmp_path / "local" / "w").read_bytes() == b"w" * 1000
    storage.write("jobs/a/render-1/report.json", b'{"v": 2}')  # replaced whole
    assert storage.read("jobs/a/render-1/report.json") == b'{"v": 2}'
    assert not list((tmp_path / "shared").rglob(".*"))  # no partial files left behind

    storage.delete("jobs/a/render-1/")
    assert storage.keys("jobs/a/") == ["jobs/a/lora-2/weights.safetensors"]
    storage.delete("jobs/nothing/")  # nothing there: not an error
    assert storage.keys("jobs/nothing/") == []


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "jobs/../../x", "", "jobs/./x"])
def test_keys_stay_inside_the_root(tmp_path, key):
    storage = DirectoryStorage(tmp_path)
    with pytest.raises(StorageError, match="not a storage key"):
        storage.write(key, b"x")


def test_missing_keys_are_clear_errors(tmp_path):
    storage = DirectoryStorage(tmp_path)
    with pytest.raises(StorageError, match=r"nothing is stored under jobs/x/report\.json"):
        storage.read("jobs/x/report.json")
    with pytest.raises(StorageError, match="nothing is stored"):
        storage.download("jobs/x/w", tmp_path / "w")
