"""SweepResult.save / load: names with dots, atomic replacement, and validation on load."""

import json
import os
import re

import numpy as np
import pytest

from jopt.sweep import SweepResult


def _result(scale=1.0, n_configs=3, n_seeds=2):
    rng = np.random.default_rng(int(scale * 1000))
    curve = scale * rng.random((n_configs, n_seeds, 5))
    curve[1, 0, 3] = np.nan  # one diverged run
    return SweepResult(
        [{"lr": scale * 10.0**-i, "opt": f"adam{i}"} for i in range(n_configs)],
        {
            "acc": scale * rng.random((n_configs, n_seeds)),
            "steps": np.arange(n_configs * n_seeds, dtype=np.int32).reshape(n_configs, n_seeds),
            "curve": curve,
        },
        seeds=[3, 7][:n_seeds],
        static_names=["opt"],
        info={"wall_time": 1.5, "devices": ["cpu:0"], "chunks": [2, 1], "note": "x"},
    )


def _assert_same(loaded, expected):
    assert loaded.configs == expected.configs
    assert loaded.seeds == expected.seeds
    assert loaded.static_names == expected.static_names
    assert loaded.info == expected.info
    assert sorted(loaded.metrics) == sorted(expected.metrics)
    for name, value in expected.metrics.items():
        assert loaded.metrics[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded.metrics[name], value)
    np.testing.assert_array_equal(loaded.diverged, expected.diverged)


def test_dotted_names_do_not_overwrite_each_other(tmp_path):
    first, second = _result(1.0), _result(2.0)
    first.save(tmp_path / "sweep_lr0.1")
    second.save(tmp_path / "sweep_lr0.2")
    assert sorted(os.listdir(tmp_path)) == [
        "sweep_lr0.1.json",
        "sweep_lr0.1.npz",
        "sweep_lr0.2.json",
        "sweep_lr0.2.npz",
    ]
    loaded_first = SweepResult.load(tmp_path / "sweep_lr0.1")
    loaded_second = SweepResult.load(str(tmp_path / "sweep_lr0.2"))
    np.testing.assert_array_equal(loaded_first.metrics["acc"], first.metrics["acc"])
    np.testing.assert_array_equal(loaded_second.metrics["acc"], second.metrics["acc"])
    assert not np.array_equal(loaded_first.metrics["acc"], loaded_second.metrics["acc"])
    assert loaded_first.configs[0]["lr"] == 1.0 and loaded_second.configs[0]["lr"] == 2.0


def test_round_trip_keeps_everything(tmp_path):
    result = _result()
    assert result.diverged.tolist() == [[False, False], [True, False], [False, False]]
    result.save(tmp_path / "sub" / "dir" / "r")  # parents are created
    loaded = SweepResult.load(tmp_path / "sub" / "dir" / "r")
    _assert_same(loaded, result)
    assert loaded.metrics["curve"].shape == (3, 2, 5)
    assert loaded.metrics["steps"].dtype == np.int32
    assert np.isnan(loaded.metrics["curve"][1, 0, 3])
    assert loaded.diverged.tolist() == [[False, False], [True, False], [False, False]]
    assert loaded.best("acc", mode="max") == result.best("acc", mode="max")
    # Plain formats: readable without jopt.
    meta = json.loads((tmp_path / "sub" / "dir" / "r.json").read_text())
    assert meta["metrics"] == ["acc", "curve", "steps"] and meta["seeds"] == [3, 7]
    with np.load(tmp_path / "sub" / "dir" / "r.npz") as raw:
        np.testing.assert_array_equal(raw["curve"], result.metrics["curve"])
        np.testing.assert_array_equal(raw["diverged"], result.diverged)


def test_json_and_npz_suffixes_name_the_same_pair(tmp_path):
    result = _result()
    result.save(tmp_path / "x.json")
    assert sorted(os.listdir(tmp_path)) == ["x.json", "x.npz"]
    for name in ("x.npz", "x", "x.json"):
        _assert_same(SweepResult.load(tmp_path / name), result)
    result.save(tmp_path / "y.npz")
    assert sorted(os.listdir(tmp_path)) == ["x.json", "x.npz", "y.json", "y.npz"]


def _failing_savez(f, **arrays):
    f.write(b"PK\x03\x04 half an archive")
    raise RuntimeError("killed while writing the .npz")


def _fail_on_call(real, fail_at):
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args)
        if len(calls) == fail_at:
            raise OSError("killed")
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    "stage", ["savez", "fsync_npz", "fsync_json", "replace_npz"], ids=lambda s: f"fail_{s}"
)
def test_interrupted_save_keeps_previous_result(tmp_path, monkeypatch, stage):
    first = _result(1.0)
    first.save(tmp_path / "r")
    if stage == "savez":
        monkeypatch.setattr(np, "savez", _failing_savez)
    elif stage.startswith("fsync"):
        monkeypatch.setattr(os, "fsync", _fail_on_call(os.fsync, 1 if stage == "fsync_npz" else 2))
    else:
        monkeypatch.setattr(os, "replace", _fail_on_call(os.replace, 1))
    with pytest.raises((RuntimeError, OSError), match="killed"):
        _result(2.0).save(tmp_path / "r")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.npz"]  # no .tmp-* left
    _assert_same(SweepResult.load(tmp_path / "r"), first)


def test_kill_between_the_two_renames_is_detected(tmp_path, monkeypatch):
    _result(1.0).save(tmp_path / "r")
    monkeypatch.setattr(os, "replace", _fail_on_call(os.replace, 2))  # the .json's rename
    with pytest.raises(OSError, match="killed"):
        _result(2.0).save(tmp_path / "r")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.npz"]
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "r.npz")) + ".*sha256"):
        SweepResult.load(tmp_path / "r")


def _json(base):
    return base.with_name(base.name + ".json")


def _npz(base):
    return base.with_name(base.name + ".npz")


def _edit_json(base, edit):
    meta = json.loads(_json(base).read_text())
    edit(meta)
    _json(base).write_text(json.dumps(meta))


def _drop_checksum(base):
    _edit_json(base, lambda meta: meta.pop("npz_sha256"))


def _rewrite_npz(base, **changes):
    """A well-formed .npz with ``changes`` (None: drop), checksum dropped: only content is wrong."""
    result = _result()
    arrays = {"diverged": result.diverged, **result.metrics, **changes}
    np.savez(_npz(base), **{k: v for k, v in arrays.items() if v is not None})
    _drop_checksum(base)


def _truncate(base):
    data = _npz(base).read_bytes()
    _npz(base).write_bytes(data[: len(data) // 2])


def _garbage(base):
    _npz(base).write_bytes(np.random.default_rng(0).bytes(2000))


def _truncate_old_format(base):
    _truncate(base)
    _drop_checksum(base)


def _garbage_old_format(base):
    _garbage(base)
    _drop_checksum(base)


def _npz_of_another_save(base):
    _result(2.0).save(base.with_name("other"))
    os.replace(_npz(base.with_name("other")), _npz(base))


# case -> (the file the error must name, what it must say, how to damage the pair)
CORRUPTIONS = {
    "truncated_npz": (".npz", "sha256", _truncate),
    "truncated_npz_old_format": (".npz", "not a readable .npz", _truncate_old_format),
    "garbage_npz": (".npz", "sha256", _garbage),
    "garbage_npz_old_format": (".npz", "not a readable .npz", _garbage_old_format),
    "npz_of_another_save": (".npz", "sha256", _npz_of_another_save),
    "invalid_json": (".json", "not valid JSON", lambda b: _json(b).write_text('{"configs": [')),
    "json_not_an_object": (".json", "JSON object", lambda b: _json(b).write_text("[]")),
    "json_without_metrics": (
        ".json",
        "'metrics'",
        lambda b: _edit_json(b, lambda m: m.pop("metrics")),
    ),
    "json_seeds_not_ints": (
        ".json",
        "'seeds'",
        lambda b: _edit_json(b, lambda m: m.update(seeds=["a", "b"])),
    ),
    "metric_missing": (".npz", "'curve'.*missing", lambda b: _rewrite_npz(b, curve=None)),
    "metric_wrong_shape": (
        ".npz",
        r"'acc' has shape \(2, 3\)",
        lambda b: _rewrite_npz(b, acc=np.zeros((2, 3))),
    ),
    "diverged_missing": (
        ".npz",
        "'diverged' array is missing",
        lambda b: _rewrite_npz(b, diverged=None),
    ),
    "diverged_wrong_shape": (
        ".npz",
        r"'diverged' is bool of shape \(3, 3\)",
        lambda b: _rewrite_npz(b, diverged=np.zeros((3, 3), bool)),
    ),
    "diverged_not_bool": (
        ".npz",
        "'diverged' is float64",
        lambda b: _rewrite_npz(b, diverged=np.zeros((3, 2))),
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_files_raise_value_error_naming_the_file(tmp_path, case):
    suffix, message, corrupt = CORRUPTIONS[case]
    base = tmp_path / "r"
    _result().save(base)
    corrupt(base)
    bad_file = str(tmp_path / f"r{suffix}")
    with pytest.raises(ValueError, match=re.escape(bad_file) + ".*" + message) as info:
        SweepResult.load(base)
    if case.endswith("_old_format"):
        assert info.value.__cause__ is not None  # chained from numpy's / zipfile's error


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_missing_file_raises_file_not_found_naming_it(tmp_path, suffix):
    _result().save(tmp_path / "sweep_lr0.1")
    (tmp_path / f"sweep_lr0.1{suffix}").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / f"sweep_lr0.1{suffix}"))):
        SweepResult.load(tmp_path / "sweep_lr0.1")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nothing.json"))):
        SweepResult.load(tmp_path / "nothing")


def test_file_of_the_previous_format_still_loads(tmp_path):
    # What save wrote before the checksum was recorded: the same keys, no "npz_sha256".
    result = _result()
    meta = {
        "configs": result.configs,
        "seeds": result.seeds,
        "static_names": result.static_names,
        "metrics": sorted(result.metrics),
        "info": result.info,
    }
    (tmp_path / "old.json").write_text(json.dumps(meta, indent=1))
    np.savez(tmp_path / "old.npz", diverged=result.diverged, **result.metrics)
    _assert_same(SweepResult.load(tmp_path / "old"), result)


def test_metric_named_diverged_is_refused(tmp_path):
    result = SweepResult([{"a": 1}], {"diverged": np.zeros((1, 1))}, seeds=[0])
    with pytest.raises(ValueError, match="'diverged'"):
        result.save(tmp_path / "r")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_files_get_the_permissions_of_a_plain_open(tmp_path):
    (tmp_path / "plain").write_text("")
    expected = (tmp_path / "plain").stat().st_mode & 0o777
    _result().save(tmp_path / "r")
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == expected
    assert (tmp_path / "r.npz").stat().st_mode & 0o777 == expected
    os.chmod(tmp_path / "r.npz", 0o600)
    _result(2.0).save(tmp_path / "r")  # overwriting keeps the file's own mode
    assert (tmp_path / "r.npz").stat().st_mode & 0o777 == 0o600
