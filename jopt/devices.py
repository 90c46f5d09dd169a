"""Using the whole machine: every CPU core as a JAX device, and the device mesh of a sweep.

XLA runs one program on one CPU device with (mostly) one core busy, so vmapping a sweep alone
does not use a multi-core CPU. Splitting the CPU into one JAX device per core and sharding the
sweep's configuration axis over them does. ``import jopt`` therefore sets jax's
``jax_num_cpu_devices`` option to the number of usable cores, but only when that is still
possible and nobody chose otherwise:

* not when ``XLA_FLAGS`` has ``--xla_force_host_platform_device_count`` or the environment has
  ``JAX_NUM_CPU_DEVICES`` (your choice wins);
* not when ``JOPT_CPU_DEVICES=0`` (opt out; ``JOPT_CPU_DEVICES=N`` asks for N devices);
* not when JAX already ran an operation before ``import jopt``: the option can only be set
  before JAX's backends start. Then jopt keeps one CPU device and ``jopt.sweep.run`` says how to
  fix it: import jopt first, or set ``JAX_NUM_CPU_DEVICES=<cores>`` in the environment.

Only the CPU platform is affected; on a GPU or TPU machine the accelerators are the devices.
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np

__all__ = [
    "CONFIGURED",
    "configure_cpu_devices",
    "cpu_cores",
    "initialize_distributed",
    "sweep_mesh",
]

CONFIGURED: dict[str, object] = {"requested": None, "reason": "not attempted"}


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def configure_cpu_devices() -> None:
    """Sets ``jax_num_cpu_devices`` to the core count when allowed (see the module docstring)."""
    if "--xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        CONFIGURED.update(reason="XLA_FLAGS sets the device count")
        return
    if "JAX_NUM_CPU_DEVICES" in os.environ:
        CONFIGURED.update(reason="JAX_NUM_CPU_DEVICES is set")
        return
    wanted = os.environ.get("JOPT_CPU_DEVICES")
    count = cpu_cores() if wanted is None else int(wanted)
    if count <= 1:
        CONFIGURED.update(reason="one core, or JOPT_CPU_DEVICES<=1")
        return
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX's backends already started before jopt was imported
        CONFIGURED.update(reason="JAX was initialised before jopt was imported")
        return
    CONFIGURED.update(requested=count, reason="set by jopt")


def warn_if_cores_idle() -> None:
    """Warns once when a CPU-only run could use more cores than it has devices."""
    if CONFIGURED.get("warned"):
        return
    devices = jax.devices()
    if devices[0].platform == "cpu" and len(devices) < cpu_cores():
        CONFIGURED["warned"] = True
        warnings.warn(
            f"jopt.sweep uses {len(devices)} CPU device(s) on a machine with {cpu_cores()} cores "
            f"({CONFIGURED['reason']}). To use every core, `import jopt` before running any JAX "
            f"operation, or set JAX_NUM_CPU_DEVICES={cpu_cores()} in the environment.",
            stacklevel=3,
        )


def sweep_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh named ``"config"`` over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.sharding.Mesh(np.asarray(devices), ("config",))


def initialize_distributed(
    coordinator_address: str, num_processes: int, process_id: int, **kwargs
) -> None:
    """``jax.distributed.initialize`` for a multi-host sweep, CPU collectives included.

    On CPUs, gathering a sweep's results across processes needs a collectives backend, so this
    selects gloo before initializing. Call it right after ``import jopt``, before any JAX
    operation, in every process; then ``jopt.sweep.run`` shards configurations over the
    devices of all processes and every process receives the full result.

    Examples:
      Two processes on one machine (``process_id`` 0 and 1)::

        import jopt
        jopt.devices.initialize_distributed("127.0.0.1:23456", 2, process_id)
        result = jopt.sweep.run(trial, space)
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU backend only
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
