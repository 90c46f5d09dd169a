"""``import jopt`` leaves JAX alone; ``jopt.devices.use_all_cores()`` splits the CPU on request.

JAX's device count is fixed per process when its backends start, so every test runs its code in
a fresh Python process, with an environment free of device settings unless the test adds one.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jopt

ROOT = Path(__file__).resolve().parents[1]
CORES = jopt.devices.cpu_cores()
several_cores = pytest.mark.skipif(CORES < 2, reason="needs a machine with 2 or more cores")


def _run(code, **env):
    """Runs ``code`` in a new process; returns the JSON object its last stdout line prints."""
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    clean["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH")] if p)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Every snippet records warnings and prints {"devices": ..., "returned": ..., "warnings": [...]}.
PRELUDE = """
import json, warnings
warnings.simplefilter("always")
record = warnings.catch_warnings(record=True)
caught = record.__enter__()
returned = None
"""
REPORT = """
print(json.dumps({
    "devices": len(jax.devices()),
    "returned": returned,
    "config": jax.config.jax_num_cpu_devices,
    "warnings": [str(w.message) for w in caught],
}))
"""


def _snippet(body, **env):
    return _run(PRELUDE + textwrap.dedent(body) + REPORT, **env)


def test_import_changes_no_global_state():
    out = _snippet("""
        import jax
        before = jax.config.values.copy()
        import jopt
        assert jax.config.values == before, "import jopt changed jax.config"
    """)
    assert out["devices"] == 1 and out["config"] == -1 and out["warnings"] == []


def test_use_all_cores_makes_one_device_per_core():
    out = _snippet("""
        import jax, jopt
        returned = jopt.devices.use_all_cores()
    """)
    assert out["devices"] == out["returned"] == CORES and out["warnings"] == []


def test_explicit_count():
    out = _snippet("""
        import jax, jopt
        returned = jopt.devices.use_all_cores(3)
    """)
    assert out["devices"] == out["returned"] == 3


def test_jax_config_set_by_the_user_wins():
    out = _snippet("""
        import jax
        jax.config.update("jax_num_cpu_devices", 1)
        import jopt
        returned = jopt.devices.use_all_cores()
    """)
    assert out["devices"] == out["returned"] == 1 and out["warnings"] == []


def test_xla_flags_win():
    out = _snippet(
        """
        import jax, jopt
        returned = jopt.devices.use_all_cores()
        """,
        XLA_FLAGS="--xla_force_host_platform_device_count=3",
    )
    assert out["devices"] == out["returned"] == 3 and out["config"] == -1


def test_jax_num_cpu_devices_environment_variable_wins():
    out = _snippet(
        """
        import jax, jopt
        returned = jopt.devices.use_all_cores()
        """,
        JAX_NUM_CPU_DEVICES="3",
    )
    assert out["devices"] == out["returned"] == 3


@several_cores
def test_after_a_jax_operation_warns_and_keeps_one_device():
    out = _snippet("""
        import jax, jax.numpy as jnp, jopt
        jnp.ones(3).block_until_ready()
        returned = jopt.devices.use_all_cores()
    """)
    assert out["devices"] == out["returned"] == 1
    (message,) = out["warnings"]
    assert "use_all_cores" in message and "before any JAX operation" in message


def test_bad_count_raises():
    with pytest.raises(ValueError, match="positive int"):
        jopt.devices.use_all_cores(0)


SWEEP = """
import jax, jopt
{setup}
trial = lambda hp, key: {{"loss": hp["x"] ** 2}}
for _ in range(2):  # warns once per process, not once per sweep
    jopt.sweep.run(trial, jopt.sweep.grid(x=[1.0, 2.0]), progress=False)
"""


@several_cores
def test_sweep_warns_about_idle_cores_and_names_the_call():
    out = _snippet(SWEEP.format(setup=""))
    assert out["devices"] == 1 and len(out["warnings"]) == 1, out["warnings"]
    assert "jopt.devices.use_all_cores()" in out["warnings"][0]


@several_cores
@pytest.mark.parametrize(
    "setup, env",
    [
        ("jopt.devices.use_all_cores(1)", {}),
        ('jax.config.update("jax_num_cpu_devices", 1)', {}),
        ("", {"JAX_NUM_CPU_DEVICES": "1"}),
        ("", {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}),
    ],
    ids=["use_all_cores_1", "jax_config", "jax_env", "xla_flags"],
)
def test_sweep_is_quiet_when_the_user_chose_one_device(setup, env):
    out = _snippet(SWEEP.format(setup=setup), **env)
    assert out["devices"] == 1 and out["warnings"] == []
