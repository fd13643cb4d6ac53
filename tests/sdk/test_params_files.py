"""Parameters and files: merge rules, snapshots at call time, downloads."""

from __future__ import annotations

import hashlib

import pytest

from ml_dash import Experiment, InvalidPrefix
from ml_dash._store import ExperimentReader
from ml_dash._store._jsonio import read_json


def test_params_flatten_merge_and_version(dash_root):
    with Experiment(prefix="a/b/p", dash_root=str(dash_root)).run as exp:
        exp.params.set(learning_rate=0.0005, model={"layers": {"hidden": 128, "depth": 4}})
        exp.params.set(model={"layers": {"hidden": 256}}, batch_size=32)
        assert exp.params.get() == {
            "learning_rate": 0.0005,
            "model.layers.hidden": 256,
            "model.layers.depth": 4,
            "batch_size": 32,
        }
        assert exp.params.get(flatten=False)["model"] == {"layers": {"hidden": 256, "depth": 4}}
    doc = read_json(dash_root / "a/b/p/parameters.json")
    assert doc["version"] == 2
    assert doc["createdAt"] and doc["updatedAt"] >= doc["createdAt"]


def test_params_survive_reopen(dash_root):
    with Experiment(prefix="a/b/p", dash_root=str(dash_root)).run as exp:
        exp.params.set(a=1)
    with Experiment(prefix="a/b/p", dash_root=str(dash_root)).run as exp:
        exp.params.set(b=2)
        assert exp.params.get() == {"a": 1, "b": 2}


def test_metadata_merges_on_reopen(dash_root):
    with Experiment(
        prefix="a/b/m", dash_root=str(dash_root), description="first", tags=["x"], metadata={"gpu": "a100", "seed": 1}
    ).run:
        pass
    with Experiment(prefix="a/b/m", dash_root=str(dash_root), metadata={"seed": 2}).run as exp:
        info = exp.info()
    assert info["description"] == "first" and info["tags"] == ["x"]
    assert info["metadata"] == {"gpu": "a100", "seed": 2}
    assert "updated_at" in info


def test_file_save_snapshots_content_and_keeps_user_file(tmp_path, dash_root):
    src = tmp_path / "model.pth"
    src.write_bytes(b"version-1")
    with Experiment(prefix="a/b/f", dash_root=str(dash_root)).run as exp:
        info = exp.files("models").save(str(src), description="ckpt", tags=["best"])
        src.write_bytes(b"version-2, changed after save")
        assert info.checksum == hashlib.sha256(b"version-1").hexdigest()
        assert info.size == 9 and info.path == "/models" and info.filename == "model.pth"
        blob = exp.files.save(b"\x00\x01raw", name="raw.bin")
        (listed,) = exp.files("models").list()
        assert listed.id == info.id and listed.description == "ckpt" and listed.tags == ["best"]
        assert {f.id for f in exp.files.list()} == {info.id, blob.id}
        out = exp.files.download(info, tmp_path / "restored.pth")
        assert out.read_bytes() == b"version-1"
        assert exp.files.download(blob.id, tmp_path).read_bytes() == b"\x00\x01raw"
    assert src.read_bytes() == b"version-2, changed after save"  # never moved or deleted
    stored = dash_root / "a/b/f/files/models" / info.id / "model.pth"
    assert stored.read_bytes() == b"version-1"
    assert (dash_root / "a/b/f/files" / blob.id / "raw.bin").is_file()
    entries = ExperimentReader(dash_root, "a/b/f").files()
    assert {e["checksum"] for e in entries} == {info.checksum, blob.checksum}
    assert all(e["deletedAt"] is None and e["experimentId"] == "a/b/f" for e in entries)


def test_file_ids_are_unique_under_load(dash_root):
    with Experiment(prefix="a/b/f", dash_root=str(dash_root)).run as exp:
        ids = [exp.files("many").save(b"x", name=f"{i}.txt").id for i in range(300)]
    assert len(set(ids)) == 300
    assert len(ExperimentReader(dash_root, "a/b/f").files("many")) == 300


@pytest.mark.parametrize("name", ["a/b.txt", "..", ".", "x\\y", "bad\x00name", ""])
def test_file_names_that_would_escape_are_refused(dash_root, name):
    with Experiment(prefix="a/b/f", dash_root=str(dash_root)).run as exp:
        with pytest.raises(InvalidPrefix):
            exp.files.save(b"x", name=name)
        with pytest.raises(InvalidPrefix):
            exp.files("../../outside").save(b"x", name="ok.txt")
        exp.files.save(b"fine", name="fine.txt")
    assert [e["filename"] for e in ExperimentReader(dash_root, "a/b/f").files()] == ["fine.txt"]
    assert not (dash_root / "a/outside").exists() and not (dash_root.parent / "outside").exists()


def test_missing_file_and_bytes_without_name(dash_root, tmp_path):
    with Experiment(prefix="a/b/f", dash_root=str(dash_root)).run as exp:
        with pytest.raises(FileNotFoundError):
            exp.files.save(str(tmp_path / "nope.pth"))
        with pytest.raises(ValueError, match="needs a file name"):
            exp.files.save(b"data")
