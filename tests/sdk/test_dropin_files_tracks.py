"""Upstream 0.11's files API and tracks on ours (local mode), read back by us and by upstream.

Remote mode runs the same calls against a real server in ``tests/remote/test_dropin_remote.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import textwrap

import pytest

from ml_dash import Experiment, InvalidPrefix, InvalidValue
from ml_dash._store import ExperimentReader

UPSTREAM = os.environ.get("ML_DASH_UPSTREAM_PYTHON")
needs_upstream = pytest.mark.skipif(not UPSTREAM, reason="set ML_DASH_UPSTREAM_PYTHON to a python with ml-dash 0.11")
P = "alice/proj/dropin"


def _upstream(code: str, cwd) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_") and k != "PYTHONPATH"}
    env["ML_DASH_NO_VERSION_CHECK"] = "1"
    proc = subprocess.run(
        [UPSTREAM, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_files_api_as_upstream(dash_root, tmp_path):
    src = tmp_path / "model.pt"
    src.write_bytes(b"fake-model-weights")
    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        a = exp.files("models").upload(str(src), to="checkpoint_epoch10.pt")
        exp.files("models").upload(str(src), to="best.pt", description="best", tags=["best"], metadata={"epoch": 10})
        exp.files.upload(str(src), to="deep/er/w.pt")
        exp.files.save_text("epoch,loss\n1,0.8\n", to="results/metrics.csv")
        exp.files.save_json({"lr": 3e-4}, to="config.json")
        exp.files.save_json({"acc": 0.9}, to="results/final.json")
        exp.files.save_blob(b"\x89PNG", to="assets/placeholder.png")
        exp.files("auto").save({"k": "v"}, to="auto.json")
        exp.files("auto").save([1, 2], to="list.json")
        exp.files("auto").save(b"\x00\x01", to="blob.bin")
        exp.files("models").save_pkl({"coef": [0.1]}, to="sk.pkl")
        exp.files("models", bindrs=["ckpt"]).save_json({"epoch": 5}, to="ckpt5.json")
        with pytest.raises(FileNotFoundError, match="save_text"):
            exp.files.save("not/a/file.txt", to="x.txt")
        with pytest.raises(ValueError):  # upstream raised ValueError here too
            exp.files.save("not/a/file.txt")
        with pytest.raises(InvalidValue, match="NaN"):
            exp.files.save_json({"x": float("nan")}, to="bad.json")
        with pytest.raises(ValueError, match="to="):
            exp.files.save(b"xx")

        assert a["filename"] == "checkpoint_epoch10.pt" and a["path"] == "/models" and a["sizeBytes"] == 18
        assert {f["filename"] for f in exp.files("models").list()} == {
            "checkpoint_epoch10.pt",
            "best.pt",
            "sk.pkl",
            "ckpt5.json",
        }
        assert [f["filename"] for f in exp.files.list("*.png")] == ["placeholder.png"]
        assert sorted(f["filename"] for f in exp.files.list("results/*")) == ["final.json", "metrics.csv"]
        assert [f["path"] for f in exp.files.list("deep/er/w.pt")] == ["/deep/er"]
        assert exp.files("results/metrics.csv").exists() and not exp.files("results/nope.csv").exists()
        assert exp.files("results/metrics.csv").read_text() == "epoch,loss\n1,0.8\n"
        assert exp.files("config.json").read_text() == json.dumps({"lr": 3e-4}, indent=2)
        out = tmp_path / "out"
        got = exp.files("config.json").download(to=str(out / "config.json"))
        assert json.loads(got.read_text()) == {"lr": 3e-4}
        many = exp.files("results").download("*.json", to=str(out / "results"))
        assert [p.name for p in many] == ["final.json"] and many[0].read_bytes() == b'{\n  "acc": 0.9\n}'
        assert len(exp.files.download("results/*", to=str(out / "all"))) == 2
        assert exp.files(file_id=a["id"]).download(to=str(out / "by-id.pt")).read_bytes() == b"fake-model-weights"
        assert pickle.loads(exp.files("models/sk.pkl").download(to=str(out / "sk.pkl")).read_bytes()) == {"coef": [0.1]}
        assert [f["filename"] for f in exp.bindrs("ckpt").list()] == ["ckpt5.json"]
        dup = exp.files().duplicate(a, to="models/latest.pt")
        assert dup["path"] == "/models" and dup["checksum"] == a["checksum"] and dup["id"] != a["id"]

        # delete: by path, by pattern, by id; soft (the bytes stay), hidden from listings
        assert exp.files.delete("assets/placeholder.png")["id"]
        assert len(exp.files("auto").delete("*.json")) == 2
        exp.files(file_id=a["id"]).delete()
        with pytest.raises(FileNotFoundError):
            exp.files.delete("assets/placeholder.png")
        assert [f["filename"] for f in exp.files("auto").list()] == ["blob.bin"]
        assert not exp.files.list("*.png") and "checkpoint_epoch10.pt" not in {f["filename"] for f in exp.files.list()}

        # saving to the same path again replaces the listed file; the older one is kept, deleted
        exp.files.save_json({"lr": 1e-4}, to="config.json")
        assert [f["filename"] for f in exp.files.list("config.json")] == ["config.json"]
        assert json.loads(exp.files("config.json").read_text()) == {"lr": 1e-4}

    r = ExperimentReader(dash_root, P)
    everything = r.files(include_deleted=True)
    deleted = [e for e in everything if e.get("deletedAt")]
    assert sorted(e["filename"] for e in deleted) == [
        "auto.json",
        "checkpoint_epoch10.pt",
        "config.json",
        "list.json",
        "placeholder.png",
    ]
    assert all(r.file_path(e).is_file() for e in deleted)  # nothing removed


@pytest.mark.skipif(not _has("PIL") or not _has("numpy"), reason="save_image needs Pillow and numpy")
def test_save_image_and_array(dash_root):
    import numpy as np
    from PIL import Image

    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        img = (np.arange(64 * 64 * 3) % 255).astype("uint8").reshape(64, 64, 3)
        png = exp.files("images").save_image(img, to="a.png")
        exp.files("images").save_image(np.linspace(0, 1, 16 * 16).reshape(16, 16), to="b.jpg", quality=80)
        exp.files("auto").save(np.zeros((8, 8, 3), dtype="uint8"), to="c.png")
        path = exp.files("images/a.png").download(to=str(dash_root.parent / "a.png"))
    assert png["contentType"] == "image/png" and (np.asarray(Image.open(path)) == img).all()


@pytest.mark.skipif(not _has("imageio") or not _has("numpy"), reason="save_video needs imageio and numpy")
def test_save_video_as_gif(dash_root):
    import imageio.v3 as iio
    import numpy as np

    frames = [np.full((8, 8, 3), 40 * k, dtype="uint8") for k in range(5)]
    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        info = exp.files("videos").save_video(frames, to="rollout.gif", fps=10)
        path = exp.files("videos/rollout.gif").download(to=str(dash_root.parent / "r.gif"))
    back = iio.imread(path, index=None)
    assert info["contentType"] == "image/gif" and back.shape[0] == 5 and int(back[4].mean()) == 160


def test_object_savers_name_the_missing_package(dash_root):
    missing = [
        (m, call)
        for m, call in (
            ("torch", lambda f: f.save_torch({"w": 1}, to="m.pt")),
            ("matplotlib", lambda f: f.save_fig(to="p.png")),
            ("imageio", lambda f: f.save_video([[[0]]], to="v.mp4")),
            ("PIL", lambda f: f.save_image([[0]], to="i.png")),
        )
        if not _has(m)
    ]
    if not missing:
        pytest.skip("torch, matplotlib, imageio and Pillow are all installed")
    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        for _module, call in missing:
            with pytest.raises(ImportError, match="pip install"):
                call(exp.files)
        exp.files.save_text("still fine", to="after.txt")
    assert [e["filename"] for e in ExperimentReader(dash_root, P).files()] == ["after.txt"]


def test_tracks_as_upstream(dash_root):
    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        dt = 1.0 / 30
        for i in range(60):
            exp.tracks("robot/joints").append(q=[0.1 * i, 0.0], dq=[0.01 * i], _ts=i * dt)
            exp.tracks("robot/eef").append(pos=[0.3, 0.0, 0.5], _ts=i * dt)
        exp.tracks("camera/rgb").append(frame_id=0, _ts=0.0)
        exp.tracks("camera/rgb").append(path="frame_0.png", _ts=0.0)  # same timestamp: one entry
        exp.tracks("camera/rgb").append(pose={"x": 1, "y": {"z": 2}}, _ts=-1)  # the previous timestamp
        exp.tracks("auto").append(v=1)
        exp.tracks("auto").append(v=2)
        exp.tracks("robot/joints").flush()
        exp.tracks.flush()
        with pytest.raises(InvalidValue, match="_ts"):
            exp.tracks("auto").append(v=3, _ts="later")
        with pytest.raises(InvalidPrefix, match="share the folder"):
            exp.tracks("robot_joints")
        with pytest.raises(InvalidPrefix):
            exp.tracks("../escape")

        data = exp.tracks("robot/joints").read(format="json")
        assert data["count"] == 60 and data["entries"][1] == {"timestamp": dt, "q": [0.1, 0.0], "dq": [0.01]}
        window = exp.tracks("robot/joints").read(start_timestamp=0.5, end_timestamp=1.0)
        assert [round(e["timestamp"] * 30) for e in window["entries"]] == list(range(15, 31))
        projected = exp.tracks("robot/joints").read(columns=["q"])
        assert set(projected["entries"][0]) == {"timestamp", "q"}
        mocap = exp.tracks("robot/joints").read(format="mocap")
        assert mocap["metadata"]["frameCount"] == 60 and mocap["channels"] == ["dq", "q"]
        assert len(exp.tracks("robot/joints").read(format="jsonl").splitlines()) == 60
        rgb = exp.tracks("camera/rgb").list_entries()
        assert rgb == [{"timestamp": 0.0, "frame_id": 0, "path": "frame_0.png", "pose.x": 1, "pose.y.z": 2}]
        auto = exp.tracks("auto").list_entries()
        assert [e["v"] for e in auto] == [1, 2] and auto[0]["timestamp"] < auto[1]["timestamp"]
        s = exp.tracks("robot/joints").slice(start_timestamp=0.5, end_timestamp=1.0)
        assert len(s) == 16 and len(list(s)) == 16
        full = exp.tracks("robot/joints").slice()
        assert full.findByTime(0.51)["timestamp"] == 15 * dt  # floor match
        assert [e["timestamp"] for e in full.findByTime([0.0, 1.0])] == [0.0, 30 * dt]
        with pytest.raises(KeyError):
            full.findByTime(-1.0)
        assert sorted(exp.tracks.topics()) == ["auto", "camera/rgb", "robot/eef", "robot/joints"]

    tdir = dash_root / P / "tracks" / "robot_joints"
    lines = (tdir / "data.jsonl").read_text().splitlines()
    assert len(lines) == 60 and json.loads(lines[0]) == {"timestamp": 0.0, "q": [0.0, 0.0], "dq": [0.0]}
    meta = json.loads((tdir / "metadata.json").read_text())
    assert meta["topic"] == "robot/joints" and meta["totalEntries"] == 60 and meta["columns"] == ["dq", "q"]


def test_track_arrays_become_lists(dash_root):
    np = pytest.importorskip("numpy")
    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        exp.tracks("pose").append(pos=np.array([1.0, 2.0]), rot=np.eye(2), step=np.int64(3), _ts=1.0)
        assert exp.tracks("pose").list_entries() == [
            {"timestamp": 1.0, "pos": [1.0, 2.0], "rot": [[1.0, 0.0], [0.0, 1.0]], "step": 3}
        ]


def test_a_topic_stored_by_another_run_cannot_be_shadowed(dash_root):
    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        exp.tracks("a/b").append(x=1, _ts=1.0)
    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        with pytest.raises(InvalidPrefix, match="'a/b'"):
            exp.tracks("a_b")
        exp.tracks("a/b").append(x=2, _ts=2.0)
        assert [e["x"] for e in exp.tracks("a/b").list_entries()] == [1, 2]


@needs_upstream
def test_upstream_reads_our_tracks_and_file_kinds(tmp_path):
    root = tmp_path / ".dash"
    with Experiment(prefix=P, dash_root=str(root)).run as exp:
        for i in range(5):
            exp.tracks("robot/pos").append(x=float(i), nested={"a": i}, _ts=float(i))
        exp.files.save_text("hello", to="notes/a.txt")
        exp.files.save_json({"k": 1}, to="cfg.json")
        exp.files.save_pkl([1, 2], to="p.pkl")
        exp.files.save_blob(b"gone", to="gone.bin")
        exp.files.delete("gone.bin")
        exp.files.save_json({"k": 2}, to="cfg.json")  # replaces the listed one
    out = _upstream(
        f"""
        import json
        from pathlib import Path
        from ml_dash.storage import LocalStorage
        s = LocalStorage(Path(".dash"))
        a = ("alice", "proj", "{P}")
        files = s.list_files(*a)
        cfg = [f for f in files if f["filename"] == "cfg.json"][0]
        s.read_file(*a, cfg["id"], "cfg-copy.json")
        print(json.dumps({{
            "track": s.read_track_data(*a, "robot/pos"),
            "tracks": s.list_tracks(*a),
            "files": sorted((f["path"], f["filename"]) for f in files),
            "cfg": json.load(open("cfg-copy.json")),
        }}))
    """,
        tmp_path,
    )
    got = json.loads(out)
    assert got["track"]["count"] == 5 and got["track"]["entries"][2] == {"timestamp": 2.0, "x": 2.0, "nested.a": 2}
    assert got["tracks"][0]["topic"] == "robot/pos" and got["tracks"][0]["totalEntries"] == 5
    assert got["files"] == [["/", "cfg.json"], ["/", "p.pkl"], ["/notes", "a.txt"]]
    assert got["cfg"] == {"k": 2}


@needs_upstream
def test_we_read_upstreams_tracks_and_file_kinds(tmp_path):
    _upstream(
        f"""
        from ml_dash import Experiment
        with Experiment(prefix="{P}", dash_root=".dash").run as exp:
            for i in range(5):
                exp.tracks("robot/pos").append(x=float(i), _ts=float(i))
            exp.tracks("robot/pos").append(y=9, _ts=4.0)
            exp.files.save_text("hello", to="notes/a.txt")
            exp.files.save_json({{"k": 1}}, to="cfg.json")
            exp.files("models").save_pkl([1, 2], to="p.pkl")
            exp.files.save_blob(b"gone", to="gone.bin")
            exp.flush()
            exp.files.delete("gone.bin")
    """,
        tmp_path,
    )
    root = tmp_path / ".dash"
    with Experiment(prefix=P, dash_root=str(root)).run as exp:
        entries = exp.tracks("robot/pos").list_entries()
        assert [e["timestamp"] for e in entries] == [0.0, 1.0, 2.0, 3.0, 4.0] and entries[4] == {
            "timestamp": 4.0,
            "x": 4.0,
            "y": 9,
        }
        assert exp.files("notes/a.txt").read_text() == "hello"
        assert json.loads(exp.files("cfg.json").read_text()) == {"k": 1}
        assert pickle.loads(exp.files("models/p.pkl").download(to=str(tmp_path / "p.pkl")).read_bytes()) == [1, 2]
        assert not exp.files("gone.bin").exists()
        exp.tracks("robot/pos").append(x=5.0, _ts=5.0)  # and we continue upstream's track
        assert len(exp.tracks("robot/pos").list_entries()) == 6


def test_file_update_replaces_description_tags_metadata(dash_root):
    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        info = exp.files.save_json({"acc": 0.9}, to="results/summary.json")
        new = exp.files(file_id=info["id"], description="final", tags=["final"], metadata={"updated": True}).update()
        assert new["description"] == "final" and new["id"] == info["id"]
        exp.files("results/summary.json", description="by path").update()
        (e,) = exp.files.list("results/summary.json")
        assert (e["description"], e["tags"], e["metadata"]) == ("by path", ["final"], {"updated": True})
        with pytest.raises(FileNotFoundError):
            exp.files(file_id="404", description="x").update()


def test_automatic_track_timestamps_are_unique_across_threads(dash_root):
    import threading

    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        track = exp.tracks("busy")

        def work(k: int) -> None:
            for i in range(500):
                track.append(thread=k, i=i)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        entries = track.list_entries()
    assert len(entries) == 2000 and len({e["timestamp"] for e in entries}) == 2000
    assert sorted((e["thread"], e["i"]) for e in entries) == [(k, i) for k in range(4) for i in range(500)]


@pytest.mark.parametrize(
    "autos, last, want",
    [
        ([1.0, 2.0, 3.0], 0.0, [1.0, 2.0, 3.0]),  # increasing and after the last: kept as they are
        ([1.0, 1.0, 1.0], 0.0, [1.0, 1.000001, 1.000002]),  # equal: each a microsecond later
        ([3.0, 2.0, 4.0], 0.0, [3.0, 3.000001, 4.0]),  # the clock stepped back
        ([1.0, 2.0], 5.0, [5.000001, 5.000002]),  # not after the previous batch's last
        ([1.0, None, 2.0], 0.0, [1.0, 9.5, 2.0]),  # an explicit _ts (9.5) is left alone
    ],
)
def test_automatic_stamps_resolve_later_than_the_one_before(autos, last, want):
    from ml_dash._tracks import AUTO_TS, resolve_stamps

    rows = [{"i": i, AUTO_TS: at} if at is not None else {"i": i, "_ts": 9.5} for i, at in enumerate(autos)]
    previous = [last]
    resolve_stamps(rows, previous)
    assert [row["_ts"] for row in rows] == pytest.approx(want, abs=1e-9)
    assert all(AUTO_TS not in row for row in rows)
    assert previous[0] == pytest.approx(max(at for at, a in zip(want, autos) if a is not None), abs=1e-9)
    resolve_stamps(rows, previous)  # rows already resolved stay as they are
    assert [row["_ts"] for row in rows] == pytest.approx(want, abs=1e-9)


def test_a_batch_written_in_stamp_order_with_shared_stamps_merged(dash_root):
    from ml_dash._names import parse_prefix
    from ml_dash._store._writer import ExperimentWriter

    w = ExperimentWriter(dash_root, parse_prefix(P))
    with w.lock():  # flat rows, distinct stamps, out of order; then a batch with a shared stamp
        w.append_track("t", [{"a": 1, "_ts": 3.0}, {"a": 2, "_ts": 1.0}, {"timestamp": 9, "_ts": 2.0}], 0.0)
        w.append_track("t", [{"a": 4, "_ts": 5.0}, {"b": {"c": 5}, "_ts": 5.0}, {"a": 6, "_ts": 4.0}], 0.0)
    lines = (w.paths.track_dir("t") / "data.jsonl").read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [  # as written, batch by batch
        {"timestamp": 1.0, "a": 2},
        {"timestamp": 9},  # sorted by its stamp (2.0); the field named timestamp is what is stored
        {"timestamp": 3.0, "a": 1},
        {"timestamp": 4.0, "a": 6},
        {"timestamp": 5.0, "a": 4, "b.c": 5},
    ]
