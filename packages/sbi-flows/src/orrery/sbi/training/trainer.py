"""Generic minibatch trainer for equinox models: `SBITrainer`.

`SBITrainer.fit` orchestrates parts that live (and are tested) on their own: the
compiled programs and the cache that lets a later fit reuse them (`_programs`),
the kept-epoch / plateau-decay / early-stopping decisions (`_selection.KeptState`,
pure Python), and checkpoint snapshot and resume (`_checkpoint`).
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from orrery.interface import ConfigError, ShapeError

from .._config import TrainingSpec
from .._host_keys import epoch_draws, seed_key
from ._checkpoint import resolve_backend, resume, save_checkpoint, snapshot
from ._data_parallel import (
    DataParallel,
    make_data_parallel_epoch,
    make_stream_data_parallel_epoch,
)
from ._optim import (
    combine_model,
    make_optimizer,
    make_schedule,
    set_lr_factor,
    split_static,
    static_key,
    trainable_spec,
)
from ._programs import (
    EVAL_CHUNK,
    evaluate_mean,
    make_evaluate,
    make_setup,
    make_train_epoch,
    run_setup,
    strong,
    with_consts,
)
from ._programs import cached as _cached
from ._programs import compiled as _compiled
from ._progress import EpochProgress
from ._selection import KeptState, is_stable
from ._streaming import SplitStream, make_stream_epoch, make_stream_evaluate

__all__ = ["SBITrainer", "TrainingArtifacts"]

LossFn = Callable[[Any, Any, jax.Array], jax.Array]


@dataclass
class TrainingArtifacts:
    """What a training run produced besides the model.

    Attributes:
        history: per-epoch lists; always ``"train_loss"``, ``"val_loss"`` (NaN without
            validation data) and ``"learning_rate"`` (the rate of the epoch's last
            update); plus one list per ``epoch_metrics_fn`` key and ``"stable"``
            (1.0 / 0.0) when stability thresholds are given.
        validation_metrics: summary of the kept epoch (``best_epoch``, ``best_val_loss``,
            ``final_val_loss``, that epoch's metrics, and ``kept_train_loss``: the
            validation loss function on the kept parameters over ``n_val`` training
            rows, so that ``best_val_loss - kept_train_loss`` is the generalisation gap).
        trainer_metadata: configuration and run facts (epochs run, early stop,
            resume, checkpoint backend, wall time, unstable epochs).
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    validation_metrics: dict[str, Any] = field(default_factory=dict)
    trainer_metadata: dict[str, Any] = field(default_factory=dict)


def _n_rows(data: Any, name: str) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ShapeError(f"{name} must be a pytree holding at least one array; got {data!r}")
    leading = [int(np.shape(leaf)[0]) if np.ndim(leaf) else None for leaf in leaves]
    sizes = {-1 if n is None else n for n in leading}
    if len(sizes) != 1 or -1 in sizes:
        shown = sorted(leading, key=lambda n: -1 if n is None else n)
        raise ShapeError(
            f"every array in {name} must share one leading (batch) axis; got leading sizes {shown}"
        )
    n = sizes.pop()
    if n == 0:
        raise ShapeError(f"{name} is empty (leading axis 0)")
    return n


class SBITrainer:
    """Minibatch Adam/AdamW trainer with schedules, early stopping and exact resume.

    Every epoch shuffles the training rows with a key derived from ``seed`` and the
    epoch number, then runs all full minibatches in one jitted ``lax.scan`` (the
    ragged remainder of an epoch is dropped; a different subset is dropped each
    epoch). Validation loss is the exact mean over all validation rows.

    Args:
        learning_rate: peak (or constant) learning rate.
        batch_size: rows per update (clipped to the training-set size).
        num_epochs: maximum number of epochs.
        gradient_clip_norm: clip gradients to this global norm (``None``: no clipping).
        weight_decay: decoupled weight decay; ``> 0`` switches Adam to AdamW.
        early_stopping_patience: stop after this many epochs without an improvement of
            the monitored loss (validation loss, else training loss) larger than
            ``early_stopping_min_delta``.
        early_stopping_min_delta: minimum decrease counted as an improvement.
        use_cosine_schedule: linear warm-up then cosine decay instead of a constant rate.
        warmup_fraction: warm-up length as a fraction of the schedule horizon.
        warmup_epochs: warm-up length in epochs (overrides ``warmup_fraction``).
        min_learning_rate: start of the warm-up and floor of the decay.
        lr_schedule_total_epochs: schedule horizon in epochs (default ``num_epochs``);
            keep it fixed to make a resumed run identical to an uninterrupted one.
        lr_decay_patience: on a plateau of this many epochs without improvement of
            the monitored loss, restore the best parameters and multiply the learning
            rate (on top of its schedule) by ``lr_decay_factor``, at most
            ``lr_decay_max`` times; early stopping counts only once no decay is left.
            ``None``: no decay on plateaus.
        lr_decay_factor: the multiplier of each plateau decay, in (0, 1).
        lr_decay_max: most plateau decays.
        checkpoint_directory: write a checkpoint here at the end of every epoch.
        checkpoint_backend: ``"auto"`` (orbax if importable, else equinox),
            ``"orbax"`` or ``"equinox"``.
        resume_from_checkpoint: continue from the newest checkpoint in
            ``checkpoint_directory`` when there is one.
        seed: seed of the shuffling / loss / augmentation keys.
        progress: show a tqdm bar over epochs.

    Example:
        >>> trainer = SBITrainer(learning_rate=1e-2, num_epochs=20, progress=False)
        >>> model, artifacts = trainer.fit(model, loss_fn, train, val)  # doctest: +SKIP
        >>> min(artifacts.history["val_loss"])  # doctest: +SKIP
    """

    def __init__(
        self,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        num_epochs: int = 100,
        gradient_clip_norm: float | None = None,
        weight_decay: float = 0.0,
        early_stopping_patience: int | None = None,
        early_stopping_min_delta: float = 0.0,
        use_cosine_schedule: bool = False,
        warmup_fraction: float = 0.0,
        warmup_epochs: float | None = None,
        min_learning_rate: float = 0.0,
        lr_schedule_total_epochs: float | None = None,
        checkpoint_directory: str | None = None,
        checkpoint_backend: str = "auto",
        resume_from_checkpoint: bool = False,
        seed: int = 0,
        progress: bool = True,
        lr_decay_patience: int | None = None,
        lr_decay_factor: float = 0.3,
        lr_decay_max: int = 3,
    ):
        spec = TrainingSpec(
            learning_rate=learning_rate,
            batch_size=batch_size,
            num_epochs=num_epochs,
            gradient_clip_norm=gradient_clip_norm,
            weight_decay=weight_decay,
            early_stopping_patience=early_stopping_patience,
            early_stopping_min_delta=early_stopping_min_delta,
            use_cosine_schedule=use_cosine_schedule,
            warmup_fraction=warmup_fraction,
            warmup_epochs=warmup_epochs,
            min_learning_rate=min_learning_rate,
            lr_schedule_total_epochs=lr_schedule_total_epochs,
            checkpoint_directory=checkpoint_directory,
            checkpoint_backend=checkpoint_backend,
            resume_from_checkpoint=resume_from_checkpoint,
            seed=seed,
            progress=progress,
            lr_decay_patience=lr_decay_patience,
            lr_decay_factor=lr_decay_factor,
            lr_decay_max=lr_decay_max,
        )
        self._adopt(spec)

    @classmethod
    def from_spec(cls, spec: TrainingSpec) -> SBITrainer:
        """A trainer running a validated `orrery.sbi._config.TrainingSpec`."""
        trainer = cls.__new__(cls)
        trainer._adopt(spec)
        return trainer

    def _adopt(self, spec: TrainingSpec) -> None:
        self.spec = spec
        self.learning_rate = spec.learning_rate
        self.batch_size = spec.batch_size
        self.num_epochs = spec.num_epochs
        self.gradient_clip_norm = spec.gradient_clip_norm
        self.weight_decay = spec.weight_decay
        self.early_stopping_patience = spec.early_stopping_patience
        self.early_stopping_min_delta = spec.early_stopping_min_delta
        self.use_cosine_schedule = spec.use_cosine_schedule
        self.warmup_fraction = spec.warmup_fraction
        self.warmup_epochs = spec.warmup_epochs
        self.min_learning_rate = spec.min_learning_rate
        self.lr_schedule_total_epochs = spec.lr_schedule_total_epochs
        self.checkpoint_directory = spec.checkpoint_directory
        self.checkpoint_backend = resolve_backend(spec.checkpoint_backend)
        self.resume_from_checkpoint = spec.resume_from_checkpoint
        self.seed = spec.seed
        self.progress = spec.progress
        self.lr_decay_patience = spec.lr_decay_patience
        self.lr_decay_factor = spec.lr_decay_factor
        self.lr_decay_max = spec.lr_decay_max

    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-safe dict."""
        return {
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "num_epochs": self.num_epochs,
            "gradient_clip_norm": self.gradient_clip_norm,
            "weight_decay": self.weight_decay,
            "early_stopping_patience": self.early_stopping_patience,
            "early_stopping_min_delta": self.early_stopping_min_delta,
            "use_cosine_schedule": self.use_cosine_schedule,
            "warmup_fraction": self.warmup_fraction,
            "warmup_epochs": self.warmup_epochs,
            "min_learning_rate": self.min_learning_rate,
            "lr_schedule_total_epochs": self.lr_schedule_total_epochs,
            "checkpoint_directory": self.checkpoint_directory,
            "checkpoint_backend": self.checkpoint_backend,
            "resume_from_checkpoint": self.resume_from_checkpoint,
            "seed": self.seed,
            "lr_decay_patience": self.lr_decay_patience,
            "lr_decay_factor": self.lr_decay_factor,
            "lr_decay_max": self.lr_decay_max,
        }

    def config_key(self) -> tuple:
        """The hyper-parameters that define the optimiser and schedule (a cache key)."""
        return (
            self.learning_rate,
            self.gradient_clip_norm,
            self.weight_decay,
            self.use_cosine_schedule,
            self.warmup_fraction,
            self.warmup_epochs,
            self.min_learning_rate,
            self.lr_schedule_total_epochs or self.num_epochs,
            self.lr_decay_patience is not None,
        )

    def fit(
        self,
        model: eqx.Module,
        loss_fn: LossFn,
        train_data: Any,
        val_data: Any = None,
        *,
        val_loss_fn: LossFn | None = None,
        epoch_metrics_fn: Callable[[Any], Mapping[str, float]] | None = None,
        batch_transform: Callable[[Any, jax.Array], Any] | None = None,
        stability_thresholds: Mapping[str, float] | None = None,
        devices: Any = None,
    ) -> tuple[Any, TrainingArtifacts]:
        """Train ``model`` and return ``(kept_model, artifacts)``.

        Args:
            model: an equinox module; its inexact-array leaves are trained, except
                those under the attributes its class lists in ``fixed_fields``
                (constants such as a coordinate shift, which weight decay would
                otherwise shrink).
            loss_fn: ``loss_fn(model, batch, key) -> scalar`` mean loss of a batch (a
                pytree of arrays with a leading batch axis); must be jit-compatible.
            train_data: pytree of arrays with a common leading axis ``n``.
            val_data: optional pytree of validation arrays.
            val_loss_fn: validation loss (default ``loss_fn``), called with a fixed key.
            epoch_metrics_fn: ``f(model) -> {name: float}`` evaluated after each epoch
                and recorded in ``history``.
            batch_transform: ``f(batch, key) -> batch`` applied to training batches
                only (augmentation such as noise injection).
            stability_thresholds: ``{metric: max}``; an epoch whose metric (from
                ``epoch_metrics_fn``) is above its threshold or non-finite is unstable.
                Unstable epochs are flagged in ``history["stable"]`` and never kept
                when a stable epoch exists.
            devices: ``None`` (one device), ``"all"`` (every device of every process)
                or a sequence of devices: data-parallel training, each minibatch split
                over the devices, parameters replicated. ``batch_size`` stays the
                global batch and must divide by the device count. Under
                ``jax.distributed`` every process calls ``fit`` with the same data and
                gathers only its own devices' rows; validation, metrics and the
                returned model are computed on each process's default device, and
                only process 0 writes checkpoints (with the equinox backend; every
                process resumes from them, so the directory must be shared).

        Returns:
            The kept model (lowest validation loss among stable epochs, else the
            last epoch's model) and a `TrainingArtifacts`.

        Raises:
            ConfigError: bad ``devices`` or a batch that does not divide by the
                device count.
        """
        start_time = time.perf_counter()
        thresholds = dict(stability_thresholds or {})
        if thresholds and epoch_metrics_fn is None:
            raise ConfigError("stability_thresholds need an epoch_metrics_fn producing the metrics")
        data = _as_data(train_data, val_data, devices)
        batch_size = min(self.batch_size, data.n_train)
        dp = DataParallel(devices, batch_size) if devices is not None else None
        run = self._programs(model, loss_fn, val_loss_fn, batch_transform, data, batch_size, dp)
        run_facts = {
            "n_train": data.n_train,
            "batch_size": batch_size,
            "horizon_epochs": self.spec.horizon_epochs,
            "seed": self.seed,
            "data_fingerprint": _fingerprint(data.train),
        }
        state = _RunState(
            params=run.params,
            opt_state=run.opt_state,
            best_params=run.params,
            kept=KeptState(
                has_val=data.has_val,
                min_delta=self.early_stopping_min_delta,
                early_stopping_patience=self.early_stopping_patience,
                decay_patience=self.lr_decay_patience,
                decay_factor=self.lr_decay_factor,
                decay_max=self.lr_decay_max,
            ),
        )
        if self.resume_from_checkpoint and self.checkpoint_directory is not None:
            like = {"params": run.params, "opt": run.opt_state, "best": run.params}
            loaded = resume(self.checkpoint_directory, like, run_facts)
            if loaded is not None:
                state.restore(*loaded)
        epochs = range(state.start_epoch, self.num_epochs)
        if state.kept.stopped_early:
            epochs = range(0)
        bar = EpochProgress(self.num_epochs, state.start_epoch, enabled=self.progress)
        compile_s = 0.0
        if len(epochs) and not data.streaming and dp is None:
            compile_s = self._compile_ahead(run, state, data, bar)
        try:
            for epoch in epochs:
                self._epoch(epoch, run, state, data, dp, epoch_metrics_fn, thresholds, run_facts)
                bar.epoch(state.history["train_loss"][-1], state.history["val_loss"][-1])
                if state.kept.stopped_early:
                    break
        finally:
            note = None
            if state.kept.stopped_early and state.history["train_loss"]:
                note = (
                    f"early stopping after epoch {len(state.history['train_loss'])}: no "
                    f"improvement for {state.kept.since_improved} epochs; kept epoch "
                    f"{state.kept.best_epoch}"
                )
            bar.close(note)
        model_out = combine_model(state.best_params, run.consts, run.bare)
        facts = {
            "kept_train_loss": _kept_train_loss(run, state, data),
            "steps_per_epoch": data.n_train // batch_size,
            "effective_batch_size": batch_size,
            "wall_time_s": time.perf_counter() - start_time,
            "compile_time_s": compile_s,
        }
        return model_out, self._artifacts(state, data, dp, thresholds, run_facts, facts)

    def _programs(
        self,
        model: eqx.Module,
        loss_fn: LossFn,
        val_loss_fn: LossFn | None,
        batch_transform: Callable[[Any, jax.Array], Any] | None,
        data: _Data,
        batch_size: int,
        dp: DataParallel | None,
    ) -> _Programs:
        """Optimiser, epoch and validation programs of a fit, from the cache where it can."""
        steps_per_epoch = data.n_train // batch_size
        schedule = make_schedule(
            learning_rate=self.learning_rate,
            use_cosine_schedule=self.use_cosine_schedule,
            steps_per_epoch=steps_per_epoch,
            horizon_epochs=self.spec.horizon_epochs,
            warmup_fraction=self.warmup_fraction,
            warmup_epochs=self.warmup_epochs,
            min_learning_rate=self.min_learning_rate,
        )
        optimizer = make_optimizer(
            schedule,
            weight_decay=self.weight_decay,
            gradient_clip_norm=self.gradient_clip_norm,
            scalable=self.lr_decay_patience is not None,
        )
        params, static = eqx.partition(model, trainable_spec(model))
        # Strong dtypes from the start, so the first epoch does not compile twice.
        params = strong(params)
        # The non-trained arrays (flow permutations) are inputs of the compiled
        # programs, not constants: a repeat fit with another seed reuses them.
        consts, bare = split_static(static)
        arch = static_key(bare)
        opt_key = (self.config_key(), steps_per_epoch)
        # Programs taking the non-trained arrays as inputs are cached per architecture.
        by_arch = arch is not None
        make_epoch = _epoch_factory(data.streaming, dp)
        train_cache_key = (
            "train",
            data.streaming,
            None if dp is None else dp.devices,
            arch if by_arch else static,
            opt_key,
            loss_fn,
            batch_transform,
            batch_size,
        )
        train_epoch = _cached(
            train_cache_key,
            lambda: make_epoch(
                bare if by_arch else static, optimizer, loss_fn, batch_transform, batch_size
            ),
        )
        if data.streaming and dp is None:
            train_epoch = functools.partial(train_epoch, consts=consts if by_arch else None)
        val_fn = val_loss_fn or loss_fn
        # Validation runs in chunks of at least 1024 rows: usually one call, one compile.
        eval_chunk = max(batch_size, EVAL_CHUNK)
        evaluate = None
        if data.has_val:
            eval_fns = _cached(
                ("eval", arch if arch is not None else static, val_fn, eval_chunk),
                lambda: make_evaluate(bare, val_fn, eval_chunk),
            )
            evaluate = functools.partial(evaluate_mean, eval_fns, eval_chunk, consts=consts)
            if data.streaming:
                evaluate = make_stream_evaluate(evaluate, eval_chunk)
        # Optimiser state, rates and keys in one program (eagerly, each its own programs).
        setup = _cached(("setup", opt_key), lambda: make_setup(optimizer, schedule))
        end_steps = np.arange(1, self.num_epochs + 1) * steps_per_epoch - 1
        base_key = seed_key(self.seed)  # jax.random.key's value, without a program
        opt_state, lrs, epoch_keys, val_data = run_setup(setup, params, base_key, end_steps)
        return _Programs(
            params=params,
            opt_state=opt_state,
            consts=consts,
            bare=bare,
            train_epoch=train_epoch,
            train_cache_key=train_cache_key,
            evaluate=evaluate,
            epoch_lrs=np.broadcast_to(np.asarray(lrs, dtype=np.float64), end_steps.shape),
            epoch_keys=np.asarray(epoch_keys),
            base_key=base_key,
            val_key=jax.random.wrap_key_data(val_data),
            batch_size=batch_size,
        )

    def _compile_ahead(
        self, run: _Programs, state: _RunState, data: _Data, bar: EpochProgress
    ) -> float:
        """Compile the in-memory epoch (and validation) before the first epoch; seconds taken.

        A repeat fit of the same architecture and data shapes reuses the compiled step.
        """
        bar.compiling("the training step")
        t0 = time.perf_counter()
        first = run.epoch_draws(state.start_epoch, data.n_train)
        args = (state.params, state.opt_state, data.train, first, run.consts)
        program, reused = _compiled(run.train_cache_key, run.train_epoch, args)
        run.train_epoch = with_consts(program, run.consts, like=state.params)
        if run.evaluate is not None:
            run.evaluate(state.params, data.val, run.val_key, data.n_val)  # compiles it
        bar.compiled(reused)
        return time.perf_counter() - t0

    def _epoch(
        self,
        epoch: int,
        run: _Programs,
        state: _RunState,
        data: _Data,
        dp: DataParallel | None,
        epoch_metrics_fn: Callable[[Any], Mapping[str, float]] | None,
        thresholds: dict[str, float],
        run_facts: dict[str, Any],
    ) -> None:
        """One epoch: train, validate, record, decide (keep / decay / stop), checkpoint."""
        history = state.history
        if dp is None:
            draws = run.epoch_key(epoch) if data.streaming else run.epoch_draws(epoch, data.n_train)
            state.params, state.opt_state, train_loss = run.train_epoch(
                state.params, state.opt_state, data.train, draws
            )
        else:
            if state.dp is None:
                state.dp = (dp.replicate(state.params), dp.replicate(state.opt_state))
                state.consts_dp = dp.replicate(run.consts)
            params_dp, opt_dp, train_loss = run.train_epoch(
                *state.dp, data.train, run.epoch_key(epoch), state.consts_dp
            )
            state.dp = (params_dp, opt_dp)
            state.params = dp.local(params_dp)
        history["train_loss"].append(float(train_loss))
        history["learning_rate"].append(float(run.epoch_lrs[epoch]) * state.kept.lr_factor)
        val_loss = math.nan
        if run.evaluate is not None:
            val_loss = float(run.evaluate(state.params, data.val, run.val_key, data.n_val))
        history["val_loss"].append(val_loss)
        stable = True
        if epoch_metrics_fn is not None:
            metrics = epoch_metrics_fn(combine_model(state.params, run.consts, run.bare))
            for name, value in metrics.items():
                history.setdefault(name, []).append(float(value))
            stable = is_stable(metrics, thresholds)
            if thresholds:
                history.setdefault("stable", []).append(float(stable))
        decision = state.kept.update(
            epoch + 1, val_loss if data.has_val else float(train_loss), stable=stable
        )
        if decision.keep:
            state.best_params = state.params
        if decision.decay:  # a plateau: back to the best state, at a lower rate
            state.params = state.best_params
            state.opt_state = set_lr_factor(state.opt_state, state.kept.lr_factor)
            if dp is not None and state.dp is not None:
                opt_local = set_lr_factor(dp.local(state.dp[1]), state.kept.lr_factor)
                state.dp = (dp.replicate(state.params), dp.replicate(opt_local))
        if self.checkpoint_directory is not None:
            self._checkpoint(epoch, run, state, dp, run_facts)

    def _checkpoint(
        self,
        epoch: int,
        run: _Programs,
        state: _RunState,
        dp: DataParallel | None,
        run_facts: dict[str, Any],
    ) -> None:
        """Write epoch ``epoch + 1``'s checkpoint (process 0; every process waits for it)."""
        directory = self.checkpoint_directory
        if directory is None:
            return
        backend = self.checkpoint_backend
        if dp is not None and dp.multi_process:
            # orbax's save is collective (every process must call it); process 0
            # alone writes plain equinox files, which every process can read.
            backend = "equinox"
        if dp is not None and state.dp is not None:
            state.opt_state = dp.local(state.dp[1])
        if jax.process_index() == 0:
            save_checkpoint(
                directory,
                backend=backend,
                epoch=epoch + 1,
                arrays={"params": state.params, "opt": state.opt_state, "best": state.best_params},
                state=snapshot(
                    state.history,
                    state.kept.as_state(),
                    run_facts,
                    seed=self.seed,
                    key=run.base_key,
                ),
            )
        if dp is not None:
            dp.barrier(f"orrery-sbi-checkpoint-{epoch + 1}")

    def _artifacts(
        self,
        state: _RunState,
        data: _Data,
        dp: DataParallel | None,
        thresholds: dict[str, float],
        run_facts: dict[str, Any],
        facts: dict[str, Any],
    ) -> TrainingArtifacts:
        """History, the kept epoch's summary and the run's metadata."""
        history, kept = state.history, state.kept
        epochs_run = len(history["train_loss"])
        validation_metrics: dict[str, Any] = {
            "best_epoch": kept.best_epoch,
            "best_val_loss": kept.best_loss if data.has_val else math.nan,
            "final_val_loss": history["val_loss"][-1] if epochs_run else math.nan,
            "final_train_loss": history["train_loss"][-1] if epochs_run else math.nan,
            "kept_train_loss": facts["kept_train_loss"],
        }
        if kept.best_epoch:
            for name, values in history.items():
                if name not in ("train_loss", "val_loss", "learning_rate", "stable"):
                    validation_metrics[name] = values[kept.best_epoch - 1]
        unstable = [i + 1 for i, s in enumerate(history.get("stable", [])) if not s]
        metadata = dict(self.config())
        metadata.update(
            {
                "steps_per_epoch": facts["steps_per_epoch"],
                "effective_batch_size": facts["effective_batch_size"],
                "n_train": data.n_train,
                "n_val": data.n_val,
                "epochs_run": epochs_run,
                "stopped_early": kept.stopped_early,
                "resumed_from_epoch": state.resumed_from,
                "optimizer": "adamw" if self.weight_decay > 0 else "adam",
                "unstable_epochs": unstable,
                "kept_epoch_stable": bool(kept.best_stable) if thresholds else None,
                "stability_thresholds": thresholds or None,
                "wall_time_s": facts["wall_time_s"],
                "compile_time_s": facts["compile_time_s"],
                "data_fingerprint": run_facts["data_fingerprint"],
                "devices": None if dp is None else len(dp.devices),
                "processes": None if dp is None else len({d.process_index for d in dp.devices}),
            }
        )
        return TrainingArtifacts(history, validation_metrics, metadata)


@dataclass
class _Data:
    """The training and validation data of a fit, as its programs read them."""

    train: Any
    val: Any
    n_train: int
    n_val: int
    streaming: bool
    #: the training pytree as the caller gave it (NumPy leaves stay on the host)
    given_train: Any = None

    @property
    def has_val(self) -> bool:
        return self.val is not None


def _kept_train_loss(run: _Programs, state: _RunState, data: _Data) -> float:
    """The validation loss function on the kept parameters over ``n_val`` training rows.

    The epoch's ``train_loss`` is a running mean over minibatches while the
    parameters move (and with the training-only noise); this is the quantity the
    validation loss is, on as many training rows, so that their difference at the
    kept epoch is the generalisation gap. NaN without validation data, epochs or
    in-memory rows (a streaming fit).
    """
    if run.evaluate is None or data.streaming or not state.history["train_loss"]:
        return math.nan
    n = min(data.n_val, data.n_train)
    # The caller's NumPy rows are sliced on the host: a device slice is a program.
    rows = jax.tree.map(
        lambda given, a: _on_device(given[:n]) if isinstance(given, np.ndarray) else a[:n],
        data.given_train,
        data.train,
    )
    return float(run.evaluate(state.best_params, rows, run.val_key, n))


def _as_data(train_data: Any, val_data: Any, devices: Any) -> _Data:
    """Row counts checked; arrays on the device (data-parallel: on the host)."""
    # A SplitStream (a split of a streaming dataset) is read window by window.
    if isinstance(train_data, SplitStream):
        n_val = val_data.n_rows if isinstance(val_data, SplitStream) else 0
        return _Data(train_data, val_data, train_data.n_rows, n_val, True)
    n_train = _n_rows(train_data, "train_data")
    n_val = _n_rows(val_data, "val_data") if val_data is not None else 0
    # Data-parallel epochs gather each process's rows on the host.
    train = jax.tree.map(np.asarray if devices is not None else _on_device, train_data)
    val = jax.tree.map(_on_device, val_data) if val_data is not None else None
    return _Data(train, val, n_train, n_val, False, given_train=train_data)


def _on_device(leaf: Any) -> jax.Array:
    """``jnp.asarray(leaf)``; a NumPy array is put on the device without compiling a copy."""
    return jax.device_put(leaf) if isinstance(leaf, np.ndarray) else jnp.asarray(leaf)


@dataclass
class _Programs:
    """What `SBITrainer._programs` prepares: initial state, programs, keys, rates."""

    params: Any
    opt_state: Any
    consts: Any
    bare: Any
    train_epoch: Callable[..., Any]
    train_cache_key: tuple
    evaluate: Callable[..., Any] | None
    epoch_lrs: np.ndarray
    #: raw data of ``fold_in(base_key, epoch)`` for every epoch, on the host
    epoch_keys: np.ndarray
    base_key: jax.Array
    val_key: jax.Array
    batch_size: int

    def epoch_key(self, epoch: int) -> jax.Array:
        """``fold_in(base_key, epoch)``, from the host copy (no program to compile)."""
        return jax.random.wrap_key_data(self.epoch_keys[epoch])

    def epoch_draws(self, epoch: int, n_train: int) -> tuple[np.ndarray, np.ndarray]:
        """The in-memory epoch's shuffle and step keys (`epoch_draws`), from the host copy."""
        return epoch_draws(self.epoch_keys[epoch], n_train, self.batch_size)


@dataclass
class _RunState:
    """The state an epoch updates: parameters, optimiser, kept state and history."""

    params: Any
    opt_state: Any
    best_params: Any
    kept: KeptState
    history: dict[str, list[float]] = field(
        default_factory=lambda: {"train_loss": [], "val_loss": [], "learning_rate": []}
    )
    start_epoch: int = 0
    resumed_from: int | None = None
    #: data-parallel: the replicated (params, opt_state), and the replicated consts
    dp: tuple[Any, Any] | None = None
    consts_dp: Any = None

    def restore(self, arrays: dict[str, Any], state: dict[str, Any]) -> None:
        """Continue from a checkpoint's arrays and state (see `_checkpoint.resume`)."""
        self.params, self.opt_state, self.best_params = (
            arrays["params"],
            arrays["opt"],
            arrays["best"],
        )
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.kept = self.kept.restored(state)
        self.start_epoch = self.resumed_from = state["epoch"]


def _epoch_factory(streaming: bool, dp: DataParallel | None) -> Callable[..., Any]:
    """The epoch builder for in-memory or streamed data, on one device or several."""
    if dp is None:
        return make_stream_epoch if streaming else make_train_epoch
    dp_epoch = make_stream_data_parallel_epoch if streaming else make_data_parallel_epoch

    def make_epoch(
        static: Any, optimizer: Any, loss_fn: LossFn, batch_transform: Any, batch_size: int
    ) -> Any:
        return dp_epoch(static, optimizer, loss_fn, batch_transform, batch_size, dp)

    return make_epoch


def _fingerprint(data: Any) -> str | None:
    """SHA-256 of the training arrays (a streamed split: its dataset's fingerprint)."""
    if isinstance(data, SplitStream):
        return getattr(data.dataset, "fingerprint", None)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(data):
        arr = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()
