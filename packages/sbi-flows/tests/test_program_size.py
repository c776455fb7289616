"""The size of sbi-flows' main programs: pinned, and independent of the data's size.

Compile time follows program size, so these tests guard a first fit's cost
without timing anything: a change that multiplies a program (a Python loop
unrolled over layers, minibatches or validation chunks, a branch per row) fails
here. A recipe-shaped fit (``ConditionalFlowPosterior.recommended``) runs up to
the point where the trainer would compile its epoch; the three programs a fit
compiles are lowered to StableHLO and their ops counted:

- ``build``: the network initialisation (`orrery.sbi._posterior.build.compiled_build`;
  evaluated on the host from its jaxpr, compiled only as the fallback, its size
  still bounds both);
- ``epoch``: one training epoch, a ``lax.scan`` over the minibatches;
- ``val``: the validation pass, a ``lax.scan`` over full chunks;
- ``sample``: drawing from the posterior of one observation
  (`orrery.sbi._posterior.model.sample_space`, the network as built).

The build runs as in a real fit (on the host); the epoch, validation and
sampling programs are only lowered.

When a deliberate change moves a pin, update it (with the new count in the
commit message); the margin absorbs JAX-version noise, not a new design.
"""

from typing import Any

import equinox as eqx
import jax
import numpy as np
import pytest

import orrery.sbi.posterior as posterior_module
from orrery.sbi import ConditionalFlowPosterior, SimulationDataset
from orrery.sbi._posterior import model as model_module
from orrery.sbi.training import _programs
from orrery.sbi.training import trainer as trainer_module

#: relative margin around each pin
MARGIN = 0.25
#: StableHLO ops, recommended(3, 2000), 5 auxiliary observations (jax 0.10)
PINS = {"build": 3285, "epoch": 2471, "val": 838, "sample": 890}


class _Lowered(Exception):
    """Stops the fit once its programs are lowered."""


def _ops(lowered) -> int:
    return sum(1 for line in lowered.as_text().splitlines() if " = " in line)


def _within(count: int, pin: int) -> bool:
    return abs(count - pin) <= MARGIN * pin


def _program_sizes(monkeypatch, n_rows: int, recipe_rows: int) -> dict[str, int]:
    """Op counts of a recipe fit's programs, for ``n_rows`` simulations."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(n_rows, 3))
    x = theta @ rng.normal(size=(3, 5)) + 0.1 * rng.normal(size=(n_rows, 5))
    dataset = SimulationDataset.from_arrays(theta, x, seed=0)
    post = ConditionalFlowPosterior.recommended(3, recipe_rows, seed=0)
    sizes: dict[str, Any] = {}  # op counts, and the model while its programs lower
    real_build = posterior_module.compiled_build

    def spy_build(make, key, cache_key):
        lowered = eqx.filter_jit(make).lower(key)
        sizes["build"] = _ops(lowered)
        sizes["build_callbacks"] = lowered.as_text().count("callback")
        return real_build(make, key, cache_key)

    real_programs = trainer_module.SBITrainer._programs

    def spy_programs(self, model, *args):
        sizes["model"] = model
        return real_programs(self, model, *args)

    def spy_compiled(key, epoch_fn, args):
        sizes["epoch"] = _ops(epoch_fn.lower(*args))
        params, _, data, _, consts = args  # the epoch's draws are not a key
        step_key = jax.random.key(0)
        evals = [fns for k, fns in _programs.JIT_CACHE.items() if k[0] == "eval"]
        full_chunks, _ = evals[-1]  # the one this fit has just added or reused
        sizes["val"] = _ops(full_chunks.lower(params, data, step_key, consts))
        model = sizes.pop("model")
        embedding = model.embed(jax.tree.map(lambda a: a[0], data.observations))
        lowered = model_module.sample_space.lower(model, step_key, embedding, 100)
        sizes["sample"] = _ops(lowered)
        raise _Lowered

    with monkeypatch.context() as patch:
        patch.setattr(posterior_module, "compiled_build", spy_build)
        patch.setattr(trainer_module.SBITrainer, "_programs", spy_programs)
        patch.setattr(trainer_module, "_compiled", spy_compiled)
        with pytest.raises(_Lowered):
            post.fit(dataset)
    return sizes


@pytest.fixture(scope="module")
def sizes():
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {
            "small": _program_sizes(monkeypatch, 2000, 2000),
            "more_rows": _program_sizes(monkeypatch, 8000, 2000),
        }


@pytest.mark.parametrize("program", sorted(PINS))
def test_programs_are_pinned(sizes, program):
    count = sizes["small"][program]
    assert _within(count, PINS[program]), f"{program}: {count} ops, pinned {PINS[program]}"


@pytest.mark.parametrize("program", sorted(PINS))
def test_programs_do_not_grow_with_the_simulations(sizes, program):
    # Four times the rows, same architecture and batch size: the epoch scans over
    # more minibatches and validation over more chunks, in programs of the same size.
    small, more = sizes["small"][program], sizes["more_rows"][program]
    assert more <= 1.02 * small, f"{program}: {small} ops at 2,000 rows, {more} at 8,000"


def test_the_margin_can_fail():
    assert not _within(int(PINS["epoch"] * 1.3), PINS["epoch"])
    assert not _within(int(PINS["epoch"] * 0.7), PINS["epoch"])


def test_the_build_has_no_host_callback(sizes):
    # JAX's persistent compilation cache refuses programs with host callbacks (such as
    # equinox's argument checks in flowjax's constructors): the build would be compiled
    # again in every process even with `orrery.sbi.enable_compilation_cache` on.
    assert sizes["small"]["build_callbacks"] == 0
