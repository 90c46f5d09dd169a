"""Using the whole machine: every CPU core as a JAX device, and the device mesh of a sweep.

XLA runs one program on one CPU device with (mostly) one core busy, so vmapping a sweep alone
does not use a multi-core CPU. Splitting the CPU into one JAX device per core and sharding the
sweep's configuration axis over them does. That split is a process-wide JAX setting, so
``import jopt`` leaves it alone: a script asks for it with one line at its top,
:func:`use_all_cores`, before any JAX operation.

Only the CPU platform is affected; on a GPU or TPU machine the accelerators are the devices.
"""

from __future__ import annotations

import os
import re
import warnings

import jax
import numpy as np

__all__ = [
    "cpu_cores",
    "initialize_distributed",
    "sweep_mesh",
    "use_all_cores",
]

_XLA_FLAG = "--xla_force_host_platform_device_count"
_JAX_DEFAULT = -1  # jax_num_cpu_devices' default: one CPU device, unless XLA_FLAGS says more
# What this process asked for: the count use_all_cores set, and whether the idle-cores warning
# already fired (a sweep script calls jopt.sweep.run many times; once is enough).
_STATE: dict[str, object] = {"called": False, "set_to": None, "warned": False}


def cpu_cores() -> int:
    """Cores this process may run on: the count :func:`use_all_cores` makes devices of.

    Examples:
      >>> import jopt
      >>> jopt.devices.cpu_cores() >= 1
      True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _user_choice() -> int | None:
    """The CPU device count the user chose outside jopt, or None when they chose none."""
    configured = jax.config.jax_num_cpu_devices
    if "JAX_NUM_CPU_DEVICES" in os.environ:
        return configured
    if configured != _JAX_DEFAULT and configured != _STATE["set_to"]:
        return configured
    flags = os.environ.get("XLA_FLAGS", "")
    if _XLA_FLAG in flags:
        # jax_num_cpu_devices, when set, takes precedence over the XLA flag.
        match = re.search(rf"{_XLA_FLAG}=(\d+)", flags)
        return configured if configured >= 0 else int(match.group(1)) if match else 1
    return None


def _local_cpu_devices() -> int:
    return len(jax.local_devices(backend="cpu"))


def use_all_cores(count: int | None = None) -> int:
    """Makes each CPU core a JAX device, unless you chose the device count yourself.

    Sets jax's ``jax_num_cpu_devices`` option to ``count`` (default: :func:`cpu_cores`), so
    that ``jopt.sweep.run`` shards configurations over every core. This changes JAX for the
    whole process, which is why ``import jopt`` does not do it: call it once, at the top of a
    script, right after ``import jopt`` and before any JAX operation.

    It never overrides a choice made elsewhere; then it sets nothing and returns that count:

    * ``XLA_FLAGS`` has ``--xla_force_host_platform_device_count=N``;
    * the environment has ``JAX_NUM_CPU_DEVICES=N``;
    * ``jax.config.update("jax_num_cpu_devices", N)`` ran before.

    JAX fixes the device count when its backends start (at the first JAX operation). Called
    after that, it cannot change the count: it warns and returns the count in use.

    Args:
      count: the number of CPU devices to make; ``None`` (default) for one per core. ``1``
        keeps JAX's single CPU device and silences ``jopt.sweep.run``'s idle-cores warning.

    Returns:
      The number of CPU devices this process uses (per process in a multi-process run).

    Raises:
      ValueError: ``count`` is not a positive int.

    Examples:
      At the top of a script::

        import jopt

        jopt.devices.use_all_cores()  # before any JAX operation
        result = jopt.sweep.run(trial, space)  # sharded over every core
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be a positive int or None, got {count!r}.")
    _STATE["called"] = True
    chosen = _user_choice()
    if chosen is not None:
        return chosen
    wanted = cpu_cores() if count is None else count
    try:
        jax.config.update("jax_num_cpu_devices", wanted)
    except RuntimeError:  # JAX's backends started: the device count is fixed for this process
        in_use = _local_cpu_devices()
        if in_use != wanted:
            warnings.warn(
                f"jopt.devices.use_all_cores() cannot make {wanted} CPU devices: JAX already "
                f"ran an operation, which fixed the count at {in_use}. Call it right after "
                f"`import jopt`, before any JAX operation, or set JAX_NUM_CPU_DEVICES={wanted} "
                "in the environment.",
                stacklevel=2,
            )
        return in_use
    _STATE["set_to"] = wanted
    return wanted


def warn_if_cores_idle() -> None:
    """Warns once when a CPU-only run could use more cores than it has devices.

    Quiet when the user chose the device count (:func:`use_all_cores` called, ``XLA_FLAGS``,
    ``JAX_NUM_CPU_DEVICES`` or ``jax_num_cpu_devices``).
    """
    if _STATE["warned"] or _STATE["called"] or _user_choice() is not None:
        return
    devices = jax.devices()
    if devices[0].platform == "cpu" and len(devices) < cpu_cores():
        _STATE["warned"] = True
        warnings.warn(
            f"jopt.sweep uses {len(devices)} CPU device(s) on a machine with {cpu_cores()} "
            "cores. To use every core, call jopt.devices.use_all_cores() right after "
            "`import jopt`, before any JAX operation; jopt.devices.use_all_cores(1) keeps one "
            "device and silences this warning.",
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

    Args:
      coordinator_address: ``"host:port"`` of process 0, which every process connects to.
      num_processes: the number of processes taking part.
      process_id: this process's index, in ``[0, num_processes)``.
      **kwargs: passed on to ``jax.distributed.initialize`` (e.g. ``local_device_ids``).

    Examples:
      Two processes on one machine (``process_id`` 0 and 1)::

        import jopt
        jopt.devices.initialize_distributed("127.0.0.1:23456", 2, process_id)
        result = jopt.sweep.run(trial, space)
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU backend only
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
