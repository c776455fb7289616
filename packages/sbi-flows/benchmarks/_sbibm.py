"""Standard benchmark problems from ``sbibm`` 1.1.0, with its stored reference posteriors.

The problems nobody tuned the recipe on: ``sbibm`` simulates them and supplies the
reference samples of its observations 1-10 (long MCMC or exact). It pins an old
``sbi``, so it runs in an isolated environment of its own
(``uv run --isolated --no-project --with sbibm==1.1.0``), which writes the
simulations, observations, reference samples and prior to an ``.npz`` file.
(``sir`` and ``lotka_volterra`` need Julia.) ``slcp_distractors``' simulator loads
its distractor mixture with ``torch.load``, which torch >= 2.6 refuses unless the
file's distribution classes are allowed: the script allows exactly those five, so
the load stays ``weights_only``.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import numpy as np

SBIBM_TASKS = (
    "slcp",
    "gaussian_mixture",
    "gaussian_linear_uniform",
    "bernoulli_glm",
    "bernoulli_glm_raw",
    "slcp_distractors",
)

_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import pyro.distributions as pd
    import torch
    import sbibm

    name, seed, n, k, m, out = sys.argv[1:7]
    torch.manual_seed(int(seed))
    task = sbibm.get_task(name)
    theta = task.get_prior()(num_samples=int(n))
    # slcp_distractors' simulator unpickles a mixture of Student-t distributions
    allowed = [pd.MixtureSameFamily, pd.Categorical, pd.Independent, pd.Chi2]
    allowed.append(pd.MultivariateStudentT)
    with torch.serialization.safe_globals(allowed):
        x = task.get_simulator()(theta)
    obs = range(1, int(k) + 1)
    x_obs = np.stack([task.get_observation(num_observation=i).numpy()[0] for i in obs])
    refs = np.stack(
        [task.get_reference_posterior_samples(num_observation=i).numpy()[: int(m)] for i in obs]
    )
    prior = task.prior_dist
    if isinstance(prior, torch.distributions.MultivariateNormal):
        spec = {"kind": "mvn", "a": prior.loc.numpy(), "b": prior.covariance_matrix.numpy()}
    else:
        spec = {"kind": "box", "a": prior.base_dist.low.numpy(), "b": prior.base_dist.high.numpy()}
    np.savez(out, theta=theta.numpy(), x=x.numpy(), x_obs=x_obs, refs=refs, **spec)
    """
)


def sbibm_task_data(
    name: str,
    *,
    seed: int,
    num_simulations: int,
    num_observations: int,
    num_samples: int,
    workdir: Path,
):
    """``(theta, x, x_obs, references, bounds, prior)`` of an ``sbibm`` task.

    ``bounds`` is the prior's box (``None`` for a Gaussian prior) and ``prior`` the
    ``(kind, a, b)`` that `_tasks.run_sbi` takes.
    """
    if name not in SBIBM_TASKS:
        raise ValueError(f"unknown sbibm task {name!r}; expected one of {SBIBM_TASKS}")
    if not 1 <= num_observations <= 10:
        raise ValueError("sbibm has reference posteriors for observations 1-10")
    script, out = workdir / "sbibm_task.py", workdir / f"{name}_sbibm.npz"
    script.write_text(_SCRIPT)
    cmd = ["uv", "run", "--isolated", "--no-project", "--python", "3.11"]
    cmd += ["--with", "sbibm==1.1.0", "python", str(script), name, str(seed)]
    cmd += [str(num_simulations), str(num_observations), str(num_samples), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    d = np.load(out)
    kind = str(d["kind"])
    bounds = np.stack([d["a"], d["b"]], axis=1).tolist() if kind == "box" else None
    theta, x = d["theta"].astype(np.float64), d["x"].astype(np.float64)
    return theta, x, d["x_obs"].astype(np.float64), list(d["refs"]), bounds, (kind, d["a"], d["b"])
