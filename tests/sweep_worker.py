"""A sweep run in a subprocess by test_sweep.py: several devices, several processes, SIGKILL.

Usage: python tests/sweep_worker.py OUT.npz [--kill-after N] [--checkpoint DIR]
                                              [--process-id I --num-processes P --port PORT]
"""

import argparse
import os
import signal
import sys

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--kill-after", type=int, default=None)
parser.add_argument("--checkpoint", default=None)
parser.add_argument("--process-id", type=int, default=None)
parser.add_argument("--num-processes", type=int, default=1)
parser.add_argument("--port", type=int, default=23456)
args = parser.parse_args()

import jopt  # noqa: E402  (before any JAX operation, so every core becomes a device)

if args.process_id is not None:
    jopt.devices.initialize_distributed(
        f"127.0.0.1:{args.port}", args.num_processes, args.process_id
    )

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from sweep_trial import SPACE, trial  # noqa: E402

calls = {"n": 0}


def count_chunks(_):
    calls["n"] += 1
    if args.kill_after is not None and calls["n"] > args.kill_after:
        os.kill(os.getpid(), signal.SIGKILL)  # dies mid-chunk, as a crash would


def trial_with_kill(hp, key):
    out = trial(hp, key)
    if args.kill_after is not None:
        # once per config and seed: 8 calls per chunk of 4 configs x 2 seeds
        jax.debug.callback(count_chunks, out["loss"])
    return out


result = jopt.sweep.run(
    trial_with_kill,
    SPACE,
    seeds=2,
    chunk_size=4,
    checkpoint_dir=args.checkpoint,
    progress=False,
    trial_id="sweep_trial",
)
if jax.process_index() == 0:
    np.savez(
        args.out,
        devices=len(jax.devices()),
        resumed=result.info["resumed_configs"],
        **result.metrics,
    )
print("done", len(jax.devices()), jax.process_count(), flush=True)
