"""Benchmark of the model core: median wall time and peak memory of the hot paths.

Usage: ``python benchmarks/bench_model.py [--repeats 5] [--only CASE ...] [--presets reference figure]``.
Each case runs in its own subprocess so that its peak resident memory (ru_maxrss) is its own. Compilation is
excluded from the timings (one warm-up call first). Prints a table, the ratios between gradient modes and,
with several presets, each case's time under every preset relative to the first (the figure model's dense
superficial inhibition against the seed's local one). An SGD step is :func:`training.evaluation.sgd_gradients`,
the training loop's call (for 'auto' the settling check included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {
    "forward_200_images": "batched forward of 200 images",
    "stage0_step_implicit": "SGD step, stage 0 (100 pairs, 81 weights), implicit",
    "stage0_step_unrolled": "SGD step, stage 0 (100 pairs, 81 weights), unrolled",
    "stage0_step_auto": "SGD step, stage 0 (100 pairs, 81 weights), auto, settled",
    "stage2_step_implicit": "SGD step, stage 2 (50 pairs, 25 weights), implicit",
    "stage2_step_unrolled": "SGD step, stage 2 (50 pairs, 25 weights), unrolled",
    "stage2_step_auto": "SGD step, stage 2 (50 pairs, 25 weights), auto, settled",
    "stage2_step_auto_unsettled": "SGD step, stage 2 (50 pairs, 25 weights), auto, unsettled",
    "stage2_step_unrolled_unsettled": "SGD step, stage 2 (50 pairs, 25 weights), unrolled, unsettled",
    "probe_2500_pairs": "forward of one psychometric probe (2,500 pairs)",
}
UNSETTLED_J_EE_S = 5.3
"""J_EE of the superficial layer at which the example model has not converged within 300 Euler steps."""


def example_model(mode: str = "implicit", unsettled: bool = False, preset: str = "reference"):
    """A preset's parameters, a uniform orientation map and mid-range log-parameters (or a J_EE_s too strong
    for the superficial layer to converge)."""
    import jax.numpy as jnp
    import numpy as np

    from parameters import build_parameters
    from training.model import build_static, zero_kappas
    from training.util_gabor import make_uniform_orimap

    params = build_parameters(preset=preset)
    params = dataclasses.replace(params, conv=dataclasses.replace(params.conv, gradient_mode=mode))
    static = build_static(make_uniform_orimap(params.grid, np.random.default_rng(0)), 0.35, 0.28, params)
    J = {"EE": 4.5, "EI": 1.6, "IE": 5.0, "II": 1.0}
    log_params = {f"log_J_{k}_{layer}": jnp.float32(np.log(v)) for k, v in J.items() for layer in ("m", "s")}
    log_params.update(cE_m=jnp.float32(5.0), cI_m=jnp.float32(5.0), log_f_E=jnp.float32(0.0),
                      log_f_I=jnp.float32(0.0), **zero_kappas())  # fmt: skip
    if not params.ssn.couple_c_ms:
        log_params.update(cE_s=jnp.float32(5.0), cI_s=jnp.float32(5.0))
    if unsettled:
        log_params["log_J_EE_s"] = jnp.float32(np.log(UNSETTLED_J_EE_S))
    return params, static, log_params


def case_function(name: str, preset: str = "reference"):
    """A zero-argument callable that runs the case once and blocks until done."""
    import jax
    import jax.numpy as jnp

    from training.evaluation import StepSpec, psychometric_accuracies, sgd_gradients
    from training.loss import default_loss_constants
    from training.model import response_to_images
    from training.readout import Readout
    from training.trials import task_geometry
    from training.util_gabor import grating_images

    mode = next(m for m in ("unrolled", "implicit", "auto") if f"_{m}" in name) if "step" in name else "implicit"
    params, static, log_params = example_model(mode, unsettled=name.endswith("unsettled"), preset=preset)
    constants = default_loss_constants(params.loss)
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 10_000))
    if name == "forward_200_images":
        images = grating_images(jnp.linspace(0, 180, 200), 0.0, task_geometry(params), params.stimuli)
        forward = jax.jit(response_to_images, static_argnums=3)
        return lambda: jax.block_until_ready(forward(log_params, static, images, params).r_sup)
    if name.startswith("stage0"):
        spec = StepSpec(batch_size=100, general_task=True, shuffle_labels=False, contributions=(1.0, 0.0),
                        trains_ssn=True, trains_readout=True)  # fmt: skip
        readout = Readout(jnp.full(81, 0.01), jnp.float32(0.0))
        trained, untrained = split(log_params)
        return lambda: jax.block_until_ready(sgd_gradients(trained, readout, untrained, static, next(keys),
                                                           jnp.float32(4.0), constants, params, spec)[:3])  # fmt: skip
    if name.startswith("stage2"):
        spec = StepSpec(batch_size=50, general_task=False, shuffle_labels=False, contributions=(1.0, 0.0),
                        trains_ssn=True, trains_readout=False)  # fmt: skip
        readout = Readout(jnp.full(25, 0.01), jnp.float32(0.0))
        return lambda: jax.block_until_ready(sgd_gradients(log_params, readout, {}, static, next(keys),
                                                           jnp.float32(4.0), constants, params, spec)[:3])  # fmt: skip
    readout = Readout(jnp.full(25, 0.01), jnp.float32(0.0))
    return lambda: jax.block_until_ready(psychometric_accuracies(log_params, readout, static, next(keys), constants,
                                                                 params, (1.0, 0.0)))  # fmt: skip


def split(log_params: dict) -> tuple[dict, dict]:
    """Stage-0 split: kappas untrained."""
    trained = {k: v for k, v in log_params.items() if not k.startswith("kappa")}
    return trained, {k: v for k, v in log_params.items() if k.startswith("kappa")}


def run_case(name: str, repeats: int, preset: str = "reference") -> dict:
    """Time one case in this process (after a warm-up call); peak memory of the process."""
    fn = case_function(name, preset)
    start = time.perf_counter()
    fn()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return {"case": name, "median_s": times[len(times) // 2], "best_s": times[0], "first_call_s": compile_s,
            "peak_rss_gb": peak_gb}  # fmt: skip


def main() -> None:
    """Run every case (or one) in its own subprocess and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--case", choices=sorted(CASES), help="run one case in this process (internal use)")
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--presets", nargs="+", default=["reference"], help="parameter presets to compare")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats, args.presets[0])))
        return
    import jax

    print(f"machine: {platform.machine()} {platform.processor() or ''}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}, devices {jax.devices()}")  # fmt: skip
    by_preset: dict[str, dict] = {}
    for preset in args.presets:
        print(f"preset {preset}")
        by_preset[preset] = results = {}
        for name, description in CASES.items():
            if args.only and name not in args.only:
                continue
            command = [sys.executable, __file__, "--case", name, "--repeats", str(args.repeats), "--presets", preset]
            out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[name]
            print(f"  {description:<62} median {r['median_s']:8.4f} s   best {r['best_s']:8.4f} s   "
                  f"first call {r['first_call_s']:6.1f} s   peak RSS {r['peak_rss_gb']:.2f} GB")  # fmt: skip
    results = by_preset[args.presets[0]]
    ratios = (("stage0_step_implicit", "stage0_step_unrolled"), ("stage2_step_implicit", "stage2_step_unrolled"),
              ("stage0_step_auto", "stage0_step_implicit"), ("stage2_step_auto", "stage2_step_implicit"),
              ("stage2_step_auto_unsettled", "stage2_step_unrolled_unsettled"))  # fmt: skip
    for a, b in ratios:
        if a in results and b in results:
            print(f"time ratio {a}/{b} ({args.presets[0]}): {results[a]['median_s'] / results[b]['median_s']:.3f}")
    for preset in args.presets[1:]:
        for name, r in by_preset[preset].items():
            print(f"time ratio {name}, {preset}/{args.presets[0]}: {r['median_s'] / results[name]['median_s']:.3f}")


if __name__ == "__main__":
    main()
