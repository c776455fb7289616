"""The general-purpose recipe against `sbi` 0.27's defaults, on problems nobody tuned for.

``ConditionalFlowPosterior.recommended(parameter_dim, num_simulations)`` is fitted
unchanged on every task; ``sbi`` 0.27's NPE runs with its defaults (MAF, default
training loop) in an isolated environment
(``uv run --isolated --no-project --with sbi==0.27.0``), on the same simulations.
Every reference posterior is exact (the tasks are described in ``_tasks.py``):
``gaussian_linear`` and ``two_moons`` (sbibm), ``folded_5d`` (32 modes, 20-D
observation with distractors) and ``heavy_tailed_3d`` (Student-t prior), ours.

With ``--sbibm`` also standard problems from ``sbibm`` (``_sbibm.py``): its own
simulations, observations 1-3 and stored reference posteriors. With ``--positive``
the constructed positive / count / multi-decade problems of ``_positive_tasks.py``
(log-normal priors, grid reference posteriors), and with ``--judge`` the two judging
problems (NumPy simulators of sbibm's ``lotka_volterra`` and ``sir`` with sbibm's
observations and reference posteriors; never used to choose the recipe).

C2ST uses sbibm's classifier (``orrery.sbi.diagnostics.c2st``).

    uv run python packages/sbi-flows/benchmarks/general_purpose.py           # 10^4 sims
    uv run python packages/sbi-flows/benchmarks/general_purpose.py --quick   # small, fast
    # and standard problems from sbibm (its simulations and reference posteriors):
    uv run python packages/sbi-flows/benchmarks/general_purpose.py --sbibm slcp gaussian_mixture \
        gaussian_linear_uniform bernoulli_glm bernoulli_glm_raw slcp_distractors

``--override NAME=VALUE ...`` replaces recipe settings (e.g. ``weight_decay=0.5``) to try
a change on every task; the default runs the recipe unchanged. The machine is shared:
wall times are noisy (the load average is printed).
"""

from __future__ import annotations

import argparse
import ast
import functools
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _positive_tasks import JUDGE_TASKS, POSITIVE_TASKS, judge_task_data, positive_task_data
from _sbibm import SBIBM_TASKS, sbibm_task_data
from _tasks import TASKS, run_sbi, task_data  # shared with side_by_side.py


# ----------------------------------------------------------------------------- runners
def _sbi(*args):
    samples, train_s, epochs = run_sbi(*args)
    return samples, train_s, epochs, ""


def run_recipe(theta, x, x_obs, bounds, num_samples, seed, epochs, extra=None):
    import warnings

    from orrery.sbi import ConditionalFlowPosterior, ObservationBlock, SimulationDataset

    dataset = SimulationDataset.from_arrays(theta, x, bounds=bounds, seed=seed)
    overrides = {"seed": seed} if epochs is None else {"seed": seed, "num_epochs": epochs}
    overrides.update(extra or {})
    posterior = ConditionalFlowPosterior.recommended(theta.shape[1], len(theta), **overrides)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        artifacts = posterior.fit(dataset)
    train_s = time.perf_counter() - start
    for w in caught:
        print(f"    warning: {w.message}")
    samples, rates = [], []
    for i, xo in enumerate(x_obs):
        draws = posterior.sample_posterior(
            [ObservationBlock("auxiliary", xo)], num_samples, seed=seed + i
        )
        samples.append(draws.to_physical())
        rates.append(draws.acceptance_rate)
    meta = artifacts.trainer_metadata
    kept = artifacts.validation_metrics["best_epoch"] or len(artifacts.history["train_loss"])
    val = artifacts.history["val_loss"][kept - 1]
    # The training loss of the kept state on as many rows as validation (the warning's);
    # the epoch's running mean beside it.
    gap = val - artifacts.validation_metrics.get("kept_train_loss", float("nan"))
    running = val - artifacts.history["train_loss"][kept - 1]
    # The over-fitting warning's other inputs: where the kept epoch sits, how far the
    # validation loss rose after it.
    rise = max(artifacts.history["val_loss"][kept - 1 :]) - val
    note = (
        f"compile {meta['compile_time_s']:.1f} s, acceptance {np.round(rates, 3).tolist()}, "
        f"validation loss at the kept epoch {val:.3f}, validation - training loss there "
        f"{gap:.3f} nats (epoch's running mean: {running:.3f}), kept epoch {kept} of "
        f"{len(artifacts.history['val_loss'])}, validation rise after it {rise:.3f}"
    )
    return np.stack(samples), train_s, meta["epochs_run"], note


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "benchmark").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 sims, 1 obs, 300 draws")
    parser.add_argument("--num-simulations", type=int, default=10_000)
    parser.add_argument("--num-samples", type=int, default=10_000, help="draws per C2ST set")
    parser.add_argument("--num-observations", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="cap the recipe's epochs")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--sbibm",
        nargs="*",
        default=[],
        choices=SBIBM_TASKS,
        help="also these sbibm tasks, with sbibm's simulations and reference posteriors",
    )
    parser.add_argument("--positive", nargs="*", default=[], choices=list(POSITIVE_TASKS))
    parser.add_argument("--judge", nargs="*", default=[], choices=list(JUDGE_TASKS))
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="recipe constructor arguments to replace (VALUE read as a Python literal)",
    )
    parser.add_argument("--skip-sbi", action="store_true")
    parser.add_argument("--skip-recipe", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=-1, help="C2ST folds fitted in parallel")
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    if args.quick:
        args.num_simulations, args.num_samples, args.num_observations = 1_000, 300, 1
        args.epochs = args.epochs or 5

    from orrery.sbi.diagnostics import c2st

    extra = {k: ast.literal_eval(v) for k, v in (o.split("=", 1) for o in args.override)}

    print(f"load average at start: {os.getloadavg()}")
    fits, refs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {
            "seed": args.seed,
            "num_simulations": args.num_simulations,
            "num_observations": args.num_observations,
            "num_samples": args.num_samples,
        }
        for index, task in enumerate([*args.tasks, *args.sbibm, *args.positive, *args.judge]):
            if task in TASKS:
                theta, x, x_obs, refs[task] = task_data(task, **sizes)
                bounds, prior = TASKS[task].bounds, None
            elif task in POSITIVE_TASKS:
                theta, x, x_obs, refs[task], prior = positive_task_data(task, **sizes)
                bounds = None
            elif task in JUDGE_TASKS:
                theta, x, x_obs, refs[task], prior = judge_task_data(task, **sizes, workdir=tmp)
                bounds = None
            else:
                theta, x, x_obs, refs[task], bounds, prior = sbibm_task_data(
                    task, **sizes, workdir=Path(tmp)
                )
            common = (theta, x, x_obs)
            seed = args.seed + index
            recipe_args = (*common, bounds, args.num_samples, seed)
            runners = []
            if not args.skip_recipe:
                runners.append(
                    ("recipe", functools.partial(run_recipe, *recipe_args, args.epochs, extra))
                )
            if not args.skip_sbi:
                sbi_args = (task, *common, args.num_samples, args.seed, Path(tmp), prior)
                runners.append(("sbi 0.27", functools.partial(_sbi, *sbi_args)))
            for name, runner in runners:
                load = os.getloadavg()[0]
                try:
                    samples, train_s, epochs, note = runner()
                except Exception as err:  # report and go on with the other side
                    print(f"[{task}/{name}] failed: {err}", file=sys.stderr)
                    continue
                load = max(load, os.getloadavg()[0])
                print(
                    f"[{task}/{name}] trained in {train_s:.1f} s, {epochs} epochs {note} "
                    f"(load {load:.1f})"
                )
                fits.append((task, name, samples, train_s, epochs, load))

    rows = []
    for task, name, samples, train_s, epochs, load in fits:
        scores = [
            c2st(r, s, seed=args.seed, n_jobs=args.jobs)
            for r, s in zip(refs[task], samples, strict=True)
        ]
        print(f"[{task}/{name}] C2ST per observation {np.round(scores, 3)}")
        rows.append((task, name, float(np.mean(scores)), train_s, epochs, load))

    print(
        f"\n{args.num_simulations} simulations, {args.num_observations} observation(s), "
        f"{args.num_samples} draws per C2ST set; load average at end {os.getloadavg()}"
    )
    header = f"{'task':<24} {'method':<9} {'C2ST':>6} {'fit s':>8} {'epochs':>6} {'ratio':>6}"
    print(f"{header} {'load':>5}")
    base = {t: s for t, n, _, s, _, _ in rows if n == "sbi 0.27"}
    for task, name, score, train_s, epochs, load in rows:
        ratio = train_s / base.get(task, float("nan"))
        line = f"{task:<24} {name:<9} {score:6.3f} {train_s:8.1f} {epochs:6d} {ratio:6.2f}"
        print(f"{line} {load:5.1f}")
    print(
        "(fit s: wall time of fit, XLA compilation included; ratio = recipe / sbi;\n"
        " load: the highest 1-minute load average seen at the start or end of the fit)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
