"""jopt.checkpoint.SweepStore: round trips, refusing other sweeps, bad files, concurrent starts."""

import json
import multiprocessing
import os
import queue
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from jopt.checkpoint import SweepStore

FP = "0123456789abcdef" * 4
DESCRIBE = {
    "n_configs": 6,
    "seeds": [0, 1],
    "space": "5pace",
    "trial": "mod.fn",
    "programs": {"{'width': 32}": "aaaa", "{'width': 64}": "bbbb"},
}


def chunk_metrics(indices, n_seeds=2):
    """Distinct values per index and seed, three dtypes and a trailing axis."""
    indices = np.asarray(indices)
    base = indices[:, None] * 10 + np.arange(n_seeds)[None, :]
    return {
        "loss": (base / 7).astype(np.float32),
        "curve": base[..., None] + np.linspace(0.0, 1.0, 5),
        "steps": base.astype(np.int32) * 3,
    }


def assert_rows(done, indices, metrics):
    for row, index in enumerate(indices):
        assert sorted(done[index]) == sorted(metrics)
        for name, value in metrics.items():
            assert done[index][name].dtype == value.dtype
            np.testing.assert_array_equal(done[index][name], value[row])


def chunk_path(directory, chunk, fingerprint=FP):
    return directory / f"chunk-{fingerprint[:16]}-{chunk:06d}.npz"


def store_with_two_chunks(directory):
    store = SweepStore(directory, FP, DESCRIBE)
    first, second = chunk_metrics([0, 1, 2]), chunk_metrics([3, 4])
    store.save(0, np.array([0, 1, 2]), first)
    store.save(1, np.array([3, 4]), second)
    return store, first, second


def test_saved_chunks_come_back_exactly(tmp_path):
    directory = tmp_path / "nested" / "sweep"  # parents are created
    _, first, second = store_with_two_chunks(directory)
    assert sorted(os.listdir(directory)) == [
        ".lock",
        chunk_path(directory, 0).name,
        chunk_path(directory, 1).name,
        "manifest.json",
    ]  # no temporary file is left behind
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest == {"fingerprint": FP, "describe": DESCRIBE, "format": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = SweepStore(directory, FP, DESCRIBE).finished()
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert_rows(done, [0, 1, 2], first)
    assert_rows(done, [3, 4], second)
    with np.load(chunk_path(directory, 1)) as data:
        assert data["__fingerprint__"].shape == () and str(data["__fingerprint__"]) == FP
        assert re.fullmatch(r"[0-9a-f]{64}", str(data["__checksum__"]))
        np.testing.assert_array_equal(data["__indices__"], [3, 4])


def test_a_different_sweep_is_refused_unless_overwrite(tmp_path):
    store_with_two_chunks(tmp_path)
    other = {
        **DESCRIBE,
        "seeds": [0, 1, 2],
        "programs": {"{'width': 32}": "cccc", "{'width': 64}": "bbbb"},
    }
    with pytest.raises(ValueError) as refused:
        SweepStore(tmp_path, "f" * 64, other)
    message = str(refused.value)
    assert repr(str(tmp_path)) in message
    assert "seeds [0, 1] -> [0, 1, 2]" in message
    assert "trial program of group {'width': 32} changed" in message
    assert "width': 64" not in message and "space" not in message  # only what differs
    assert "use a new checkpoint_dir, or pass overwrite=True" in message
    assert len(os.listdir(tmp_path)) == 4  # refused: nothing touched

    store = SweepStore(tmp_path, "f" * 64, other, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == [".lock", "manifest.json"]
    assert store.finished() == {}
    assert json.loads((tmp_path / "manifest.json").read_text())["fingerprint"] == "f" * 64
    with pytest.raises(ValueError, match=r"seeds \[0, 1, 2\] -> \[0, 1\]"):
        SweepStore(tmp_path, FP, DESCRIBE)  # now the directory is the other sweep's


def test_chunks_of_another_sweep_are_never_returned(tmp_path):
    store_with_two_chunks(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # another sweep's chunks are skipped silently
        # Same first 16 hex digits: the names collide, only __fingerprint__ tells them apart.
        assert SweepStore(tmp_path, FP[:16] + "f" * 48, {"seeds": [0]}).finished() == {}
        (tmp_path / "manifest.json").unlink()
        truncate(chunk_path(tmp_path, 1))  # its name says whose it is: not ours to judge
        assert SweepStore(tmp_path, "e" * 64, {"seeds": [0]}).finished() == {}
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 2
    assert SweepStore(tmp_path, "e" * 64, {"seeds": [0]}, overwrite=True).finished() == {}
    assert not list(tmp_path.glob("chunk-*.npz"))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garble(path):
    path.write_bytes(b"\x93NUMPY garbage, not an archive " * 20)


def flip_a_byte(path):
    """Rewrites the chunk with one byte of one metric changed and the old checksum kept."""
    with np.load(path) as data:
        arrays = {name: data[name].copy() for name in data.files}
    arrays["curve"].reshape(-1).view(np.uint8)[3] ^= 0x10
    np.savez(path, **arrays)


def corrupt_on_disk(path):
    """Flips a byte of a metric inside the archive, as a bad disk would (its CRC fails)."""
    raw = bytearray(path.read_bytes())
    with np.load(path) as data:
        at = bytes(raw).index(data["curve"].tobytes())
    raw[at + 3] ^= 0x10
    path.write_bytes(bytes(raw))


def drop_the_checksum(path):
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files if name != "__checksum__"}
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "damage",
    [truncate, garble, flip_a_byte, corrupt_on_disk, drop_the_checksum],
    ids=lambda f: f.__name__,
)
def test_bad_chunks_are_skipped_with_a_warning(tmp_path, damage):
    store, first, second = store_with_two_chunks(tmp_path)
    bad = chunk_path(tmp_path, 1)
    damage(bad)
    with pytest.warns(UserWarning, match=re.escape(bad.name) + ".* will be recomputed"):
        done = store.finished()
    assert sorted(done) == [0, 1, 2]
    assert_rows(done, [0, 1, 2], first)
    assert not bad.exists()  # process 0 deletes it
    store.save(1, np.array([3, 4]), second)  # the recomputed chunk
    assert_rows(store.finished(), [3, 4], second)


@pytest.mark.parametrize("text", ["{not json", '{"describe": {}}', "[1, 2]", "\udcff"])
def test_a_corrupt_manifest_is_rewritten(tmp_path, text):
    _, first, second = store_with_two_chunks(tmp_path)
    (tmp_path / "manifest.json").write_bytes(text.encode(errors="surrogateescape"))
    with pytest.warns(UserWarning, match="manifest.json is corrupt; ignoring it and rewriting"):
        store = SweepStore(tmp_path, FP, DESCRIBE)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == {"fingerprint": FP, "describe": DESCRIBE, "format": 1}
    done = store.finished()
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert_rows(done, [0, 1, 2], first)
    assert_rows(done, [3, 4], second)


def test_temporary_files_of_dead_processes_are_removed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process now
    dead = tmp_path / f".tmp-{child.pid}-x"
    alive = tmp_path / f".tmp-{os.getpid()}-x"
    unrelated = tmp_path / "notes.txt"
    for path in (dead, alive, unrelated):
        path.write_bytes(b"partial")
    SweepStore(tmp_path, FP, DESCRIBE)
    assert not dead.exists()
    assert alive.exists() and unrelated.exists()


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    store = SweepStore(tmp_path, FP, DESCRIBE)

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        store.save(0, np.array([0]), chunk_metrics([0]))
    assert sorted(os.listdir(tmp_path)) == [".lock", "manifest.json"]


def test_save_checks_its_arguments(tmp_path):
    store = SweepStore(tmp_path, FP, DESCRIBE)
    with pytest.raises(ValueError, match="expected 2 rows"):
        store.save(0, np.array([0, 1]), {"loss": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="reserved"):
        store.save(0, np.array([0]), {"__indices__": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="1-d integer"):
        store.save(0, np.array([0.0]), {"loss": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="16 hex digits"):
        SweepStore(tmp_path, "not hex", DESCRIBE)
    # np.savez's own keyword names are fine as metric names.
    store.save(0, np.array([5]), {"file": np.ones((1, 2)), "allow_pickle": np.zeros((1, 2))})
    np.testing.assert_array_equal(store.finished()[5]["file"], [1.0, 1.0])


def test_only_process_zero_writes(tmp_path, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    store = SweepStore(tmp_path, FP, DESCRIBE)
    store.save(0, np.array([0]), chunk_metrics([0]))
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    store_with_two_chunks(tmp_path)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    chunk_path(tmp_path, 1).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="will be recomputed"):
        assert sorted(SweepStore(tmp_path, FP, DESCRIBE).finished()) == [0, 1, 2]
    assert chunk_path(tmp_path, 1).exists()  # only process 0 deletes
    SweepStore(tmp_path, "f" * 64, {}, overwrite=True)  # discards nothing either
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 2


ROUNDS = 8


def claim(root, fingerprint, barrier, results):
    """Starts a sweep in each of ROUNDS fresh directories at the same moment as a rival."""
    for round_ in range(ROUNDS):
        barrier.wait(timeout=60)
        directory = os.path.join(root, str(round_))
        try:
            store = SweepStore(directory, fingerprint, {"sweep": fingerprint[:4]})
        except ValueError as e:
            results.put((round_, fingerprint, str(e)))
            continue
        store.save(0, np.array([0, 1]), {"mine": np.full((2, 1), int(fingerprint[0], 16))})
        results.put((round_, fingerprint, None))


def test_two_processes_starting_different_sweeps_at_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    fingerprints = ["a" * 64, "b" * 64]
    workers = [
        context.Process(target=claim, args=(str(tmp_path), fp, barrier, results))
        for fp in fingerprints
    ]
    for worker in workers:
        worker.start()
    outcomes = []
    while len(outcomes) < 2 * ROUNDS:
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            if not all(worker.is_alive() for worker in workers):
                barrier.abort()  # one crashed: do not keep the other waiting for it
            if not any(worker.is_alive() for worker in workers):
                break  # the exit codes below say what happened
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    for round_ in range(ROUNDS):
        errors = {fp: error for r, fp, error in outcomes if r == round_}
        winners = [fp for fp, error in errors.items() if error is None]
        assert len(winners) == 1, (round_, errors)
        (loser,) = set(fingerprints) - set(winners)
        assert "holds the chunks of a different sweep" in errors[loser]
        assert f"sweep {winners[0][:4]} -> {loser[:4]}" in errors[loser]
        done = SweepStore(tmp_path / str(round_), winners[0], {"sweep": winners[0][:4]}).finished()
        assert sorted(done) == [0, 1]
        np.testing.assert_array_equal(done[1]["mine"], [int(winners[0][0], 16)])
        assert len(list((tmp_path / str(round_)).glob("chunk-*.npz"))) == 1
