"""A sweep run in a subprocess by test_sweep.py: several devices, several processes, SIGKILL.

Usage: python tests/sweep_worker.py OUT.npz [--kill-after N] [--checkpoint DIR] [--edited]
                                              [--space {regression,activations}]
                                              [--process-id I --num-processes P --port PORT]

``--kill-after N`` SIGKILLs the process while it writes chunk N + 1 (after N chunks are on
disk), leaving that chunk's temporary file behind, as a crash would. ``--edited`` runs the
trial with one constant changed.
"""

import argparse
import os
import signal
import sys

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--kill-after", type=int, default=None)
parser.add_argument("--checkpoint", default=None)
parser.add_argument("--edited", action="store_true")
parser.add_argument("--space", default="regression", choices=["regression", "activations"])
parser.add_argument("--process-id", type=int, default=None)
parser.add_argument("--num-processes", type=int, default=1)
parser.add_argument("--port", type=int, default=23456)
args = parser.parse_args()

import jopt  # noqa: E402

# Before any JAX operation. Several processes: one CPU device each, as JAX does by default.
if args.process_id is None:
    jopt.devices.use_all_cores()
else:
    jopt.devices.initialize_distributed(
        f"127.0.0.1:{args.port}", args.num_processes, args.process_id
    )

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import sweep_trial  # noqa: E402

if args.kill_after is not None:
    save = jopt.checkpoint.SweepStore.save
    saved = {"n": 0}

    def save_then_die(self, chunk, indices, metrics):
        if saved["n"] == args.kill_after:
            with open(self.directory / f".tmp-{os.getpid()}-partial", "wb") as f:
                f.write(b"PK\x03\x04 half a chunk")
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-write, as a crash would
        saved["n"] += 1
        save(self, chunk, indices, metrics)

    jopt.checkpoint.SweepStore.save = save_then_die

if args.space == "activations":
    trial, space = sweep_trial.activation_trial, sweep_trial.ACTIVATIONS
else:
    trial = sweep_trial.edited_trial if args.edited else sweep_trial.trial
    space = sweep_trial.SPACE

result = jopt.sweep.run(
    trial, space, seeds=2, chunk_size=4, checkpoint_dir=args.checkpoint, progress=False
)
if jax.process_index() == 0:
    np.savez(
        args.out,
        devices=len(jax.devices()),
        resumed=result.info["resumed_configs"],
        **result.metrics,
    )
print("done", len(jax.devices()), jax.process_count(), flush=True)
