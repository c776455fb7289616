"""SBITrainer: a visible compile stage reused across fits, plain progress lines off a
terminal, and resumes refused for another seed or other data of the same size."""

import io

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from orrery.interface import ConfigError
from orrery.sbi.training import SBITrainer
from orrery.sbi.training._progress import EpochProgress


class Scalar(eqx.Module):
    w: jax.Array


def loss(model, batch, key):
    return jnp.mean((model.w - batch["t"]) ** 2)


def data(value, n=64):
    return {"t": jnp.full((n,), value, dtype=jnp.float32)}


def test_compile_stage_runs_before_the_first_epoch_and_is_reused():
    trainer = SBITrainer(learning_rate=0.1, batch_size=16, num_epochs=2, progress=False)
    _, first = trainer.fit(Scalar(jnp.array(0.0)), loss, data(1.0), data(1.0, 16))
    _, again = trainer.fit(Scalar(jnp.array(0.5)), loss, data(2.0), data(2.0, 16))
    assert first.trainer_metadata["compile_time_s"] > 0
    # the second fit of the same architecture and shapes reuses the compiled step
    assert again.trainer_metadata["compile_time_s"] < first.trainer_metadata["compile_time_s"]


def test_plain_lines_when_stderr_is_not_a_terminal():
    stream = io.StringIO()
    bar = EpochProgress(20, enabled=True, stream=stream, every=5)
    bar.compiling("the training step")
    bar.compiled(reused=False)
    for epoch in range(20):
        bar.epoch(1.0 / (epoch + 1), 2.0)
    bar.close("early stopping after epoch 20")
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "[sbi-flows] compiling the training step ..."
    assert lines[1].startswith("[sbi-flows] compiled in ")
    assert [ln.split()[2] for ln in lines[2:6]] == ["5/20", "10/20", "15/20", "20/20"]
    assert "train loss 0.05" in lines[5] and "val loss 2" in lines[5]
    assert lines[-1] == "[sbi-flows] early stopping after epoch 20"


def test_progress_off_prints_nothing():
    stream = io.StringIO()
    bar = EpochProgress(3, enabled=False, stream=stream)
    bar.compiling("x")
    bar.compiled(reused=True)
    bar.epoch(1.0, 1.0)
    bar.close("done")
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("change", "match"),
    [({"seed": 1}, "seed"), ({"value": 3.0}, "different training data of the same size")],
)
def test_resume_refuses_another_seed_or_other_data_of_the_same_size(tmp_path, change, match):
    common = dict(
        learning_rate=0.1,
        batch_size=16,
        num_epochs=3,
        lr_schedule_total_epochs=3,
        progress=False,
        checkpoint_backend="equinox",
        checkpoint_directory=str(tmp_path),
    )
    SBITrainer(num_epochs=1, **{k: v for k, v in common.items() if k != "num_epochs"}).fit(
        Scalar(jnp.array(0.0)), loss, data(1.0)
    )
    resumed = SBITrainer(resume_from_checkpoint=True, seed=change.get("seed", 0), **common)
    with pytest.raises(ConfigError, match=match):
        resumed.fit(Scalar(jnp.array(0.0)), loss, data(change.get("value", 1.0)))
    # the same seed and data resume fine
    SBITrainer(resume_from_checkpoint=True, **common).fit(Scalar(jnp.array(0.0)), loss, data(1.0))
