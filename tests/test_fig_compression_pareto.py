"""experiments/compression_pareto.py --quick: fronts, hypervolumes, bytes, verdict from the JSON."""

import itertools
import json

import numpy as np

from experiments import common, compression_pareto


def dominates(a, b):
    """(accuracy, bytes) ``a`` dominates ``b``: no worse in both, better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def brute_front(points):
    return sorted(
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p) for j, q in enumerate(points) if j != i)
    )


def staircase_area(points, reference):
    """2-D hypervolume by hand: sweep the points by bytes, add each new accuracy strip."""
    acc_ref, bytes_ref = reference
    area, best = 0.0, acc_ref
    for acc, size in sorted(points, key=lambda p: (p[1], -p[0])):
        if size >= bytes_ref or acc <= best:
            continue
        area += (acc - best) * (bytes_ref - size)
        best = acc
    return area


def test_compression_pareto_quick(tmp_path, capsys):
    compression_pareto.main(["--quick", "--out-dir", str(tmp_path)])
    assert "overall:" in capsys.readouterr().out
    record = json.loads((tmp_path / "compression_pareto.json").read_text())
    for key in ("paper", "claim", "pass_criterion", "measured", "verdict", "command", "compute"):
        assert key in record
    assert record["wall_time_s"] > 0
    assert (tmp_path / "compression_pareto.png").stat().st_size < 300_000

    checks = {}
    for name, parameters in (("mlp", 15_210), ("cnn", 5_210)):
        m = record["measured"][name]
        assert m["parameters"] == parameters
        dense = m["dense_float32_bytes"]
        assert dense == 4 * parameters
        grid, tpe = m["grid"], m["tpe"]
        grid_points = list(zip(grid["val_accuracy"], grid["bytes"]))
        tpe_points = list(zip(tpe["val_accuracy"], tpe["bytes"]))
        assert all(0 <= a <= 1 and 0 < b <= dense for a, b in grid_points + tpe_points)

        # FRONTS: exactly the non-dominated points, by brute force
        assert sorted(m["grid_front"]) == brute_front(grid_points)
        assert sorted(m["tpe_front"]) == brute_front(tpe_points)
        configs = grid["configs"]
        for key, keep in (
            ("prune_only_front", lambda c: c["bits"] == 32),
            ("quantize_only_front", lambda c: c["sparsity"] == 0),
            ("joint_front", lambda c: c["sparsity"] > 0 and c["bits"] < 32),
        ):
            rows = [i for i, c in enumerate(configs) if keep(c)]
            expected = [rows[k] for k in brute_front([grid_points[i] for i in rows])]
            assert sorted(m[key]) == expected, key

        # HYPERVOLUME: recomputed from the JSON's points, by hand, equals the record
        hv = m["hypervolume"]
        assert hv["reference"] == {"val_accuracy": 0.0, "bytes": dense}
        for points, front, key in (
            (grid_points, m["grid_front"], "grid"),
            (tpe_points, m["tpe_front"], "tpe"),
        ):
            assert np.isclose(staircase_area(points, (0.0, dense)) / dense, hv[key], rtol=1e-9)
            on_front = [points[i] for i in front]
            assert np.isclose(staircase_area(on_front, (0.0, dense)) / dense, hv[key], rtol=1e-9)
            logged = [(a, np.log10(b)) for a, b in points]
            assert np.isclose(
                staircase_area(logged, (0.0, np.log10(dense))), hv[f"{key}_log_bytes"], rtol=1e-9
            )
        assert np.isclose(hv["ratio"], hv["tpe"] / hv["grid"])

        # BYTES: fewer with more sparsity (same bits, lr), more with more bits (same sparsity)
        size = {
            (c["sparsity"], c["bits"], c["learning_rate"]): b
            for c, b in zip(configs, grid["bytes"])
        }
        sparsities = sorted({c["sparsity"] for c in configs})
        bit_widths = sorted({c["bits"] for c in configs})
        for (s0, s1), b, lr in itertools.product(
            itertools.pairwise(sparsities), bit_widths, {c["learning_rate"] for c in configs}
        ):
            assert size[(s1, b, lr)] < size[(s0, b, lr)]
        for s, (b0, b1), lr in itertools.product(
            sparsities, itertools.pairwise(bit_widths), {c["learning_rate"] for c in configs}
        ):
            assert size[(s, b0, lr)] < size[(s, b1, lr)]
        # dense float32 storage is exactly 4 bytes per parameter
        assert size[(0.0, 32, configs[0]["learning_rate"])] == dense

        # VERDICT: recomputed from the points and the fixed criterion
        ratio_log = hv["tpe_log_bytes"] / hv["grid_log_bytes"]
        checks[f"tpe_hypervolume/{name}"] = hv["ratio"] >= 0.9 and ratio_log >= 0.9
        sparse = [c["sparsity"] > 0 for c in configs]
        quantized = [c["bits"] < 32 for c in configs]
        joint = [i for i in range(len(configs)) if sparse[i] and quantized[i]]
        single = [i for i in range(len(configs)) if not (sparse[i] and quantized[i])]
        ok = True
        for i in m["prune_only_front"] + m["quantize_only_front"]:
            acc, b = grid_points[i]
            if 4 * b <= dense:
                ok &= any(
                    grid_points[j][1] <= b and grid_points[j][0] >= acc - 0.01 - 1e-9 for j in joint
                )
        smallest = min(single, key=lambda i: grid_points[i][1])
        ok &= any(
            grid_points[j][1] < grid_points[smallest][1]
            and grid_points[j][0] >= grid_points[smallest][0] - 0.01 - 1e-9
            for j in joint
        )
        checks[f"joint_dominates/{name}"] = ok

        compute = record["compute"][name]
        assert compute["tpe"]["trials"] == len(tpe["configs"]) == 2
        assert compute["grid"]["trials"] == len(configs) == 4
    assert record["verdict"]["checks"] == checks
    assert record["verdict"]["overall"] == common.overall(checks)
    for claim in ("tpe_hypervolume", "joint_dominates"):
        part = {k: v for k, v in checks.items() if k.startswith(claim)}
        assert record["verdict"]["claims"][claim] == common.overall(part)
    assert set(record["verdict"]["reasons"]) == {k for k, v in checks.items() if not v}
