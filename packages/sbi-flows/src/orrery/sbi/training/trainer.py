"""Generic minibatch trainer for equinox models: `SBITrainer`."""

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
from .._xla import compiler_options
from ._checkpoint import load_latest_checkpoint, resolve_backend, save_checkpoint
from ._data_parallel import (
    DataParallel,
    make_data_parallel_epoch,
    make_stream_data_parallel_epoch,
)
from ._optim import (
    combine_model,
    make_optimizer,
    make_schedule,
    make_sgd_step,
    set_lr_factor,
    split_static,
    static_key,
    trainable_spec,
)
from ._progress import EpochProgress
from ._streaming import SplitStream, make_stream_epoch, make_stream_evaluate

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
            ``final_val_loss`` and that epoch's metrics).
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
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ShapeError(
            f"every array in {name} must share one leading (batch) axis; got leading sizes "
            f"{sorted(np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves)}"
        )
    n = sizes.pop()
    if n == 0:
        raise ShapeError(f"{name} is empty (leading axis 0)")
    return n


def _take(data: Any, idx: jax.Array) -> Any:
    return jax.tree.map(lambda a: a[idx], data)


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
        # A SplitStream (a split of a streaming dataset) is read window by window.
        streaming = isinstance(train_data, SplitStream)
        has_val = val_data is not None
        if streaming:
            n_train, n_val = train_data.n_rows, val_data.n_rows if has_val else 0
        else:
            n_train = _n_rows(train_data, "train_data")
            n_val = _n_rows(val_data, "val_data") if has_val else 0
            # Data-parallel epochs gather each process's rows on the host.
            train_data = jax.tree.map(
                np.asarray if devices is not None else jnp.asarray, train_data
            )
            val_data = jax.tree.map(jnp.asarray, val_data) if has_val else None
        batch_size = min(self.batch_size, n_train)
        steps_per_epoch = n_train // batch_size
        dp = DataParallel(devices, batch_size) if devices is not None else None
        horizon = self.lr_schedule_total_epochs or self.num_epochs
        schedule = make_schedule(
            learning_rate=self.learning_rate,
            use_cosine_schedule=self.use_cosine_schedule,
            steps_per_epoch=steps_per_epoch,
            horizon_epochs=horizon,
            warmup_fraction=self.warmup_fraction,
            warmup_epochs=self.warmup_epochs,
            min_learning_rate=self.min_learning_rate,
        )
        decays = self.lr_decay_patience is not None
        optimizer = make_optimizer(
            schedule,
            weight_decay=self.weight_decay,
            gradient_clip_norm=self.gradient_clip_norm,
            scalable=decays,
        )
        params, static = eqx.partition(model, trainable_spec(model))
        # Strong dtypes from the start, so the first epoch does not compile twice.
        params = _strong(params)
        # The non-trained arrays (flow permutations) are inputs of the compiled
        # programs, not constants: a repeat fit with another seed reuses them.
        consts, bare = split_static(static)
        arch = static_key(bare)
        opt_key = (self.config_key(), steps_per_epoch)
        # Jitted: eagerly, every parameter shape would compile its own small program.
        opt_init = _cached(
            ("opt_init", opt_key), lambda: jax.jit(lambda p: _strong(optimizer.init(p)))
        )
        opt_state = opt_init(params)
        base_key = jax.random.key(self.seed)
        # Programs taking the non-trained arrays as inputs are cached per architecture.
        by_arch = arch is not None
        make_epoch = make_stream_epoch if streaming else _make_train_epoch
        if dp is not None:
            dp_epoch = make_stream_data_parallel_epoch if streaming else make_data_parallel_epoch

            def make_epoch(*args):
                return dp_epoch(*args, dp)

        train_cache_key = (
            "train",
            streaming,
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
        if streaming and dp is None:
            train_epoch = functools.partial(train_epoch, consts=consts if by_arch else None)
        val_fn = val_loss_fn or loss_fn
        val_key = jax.random.fold_in(base_key, 0x7FFFFFFF)
        # Validation runs in chunks of at least 1024 rows: usually one call, one compile.
        eval_chunk = max(batch_size, _EVAL_CHUNK)
        evaluate = None
        if has_val:
            eval_fns = _cached(
                ("eval", arch if arch is not None else static, val_fn, eval_chunk),
                lambda: _make_evaluate(bare, val_fn, eval_chunk),
            )
            evaluate = functools.partial(_evaluate, eval_fns, eval_chunk, consts=consts)
        if streaming and has_val:
            evaluate = make_stream_evaluate(evaluate, eval_chunk)
        epoch_end_steps = np.arange(1, self.num_epochs + 1) * steps_per_epoch - 1
        lr_of = _cached(("schedule", opt_key), lambda: jax.jit(schedule))
        epoch_lrs = np.broadcast_to(
            np.asarray(lr_of(jnp.asarray(epoch_end_steps)), dtype=np.float64),
            epoch_end_steps.shape,
        )

        history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "learning_rate": []}
        best = {"params": params, "epoch": 0, "loss": math.inf, "stable": False}
        monitor_best, since_improved, stopped_early, start_epoch = math.inf, 0, False, 0
        lr_factor, n_decays = 1.0, 0
        resumed_from = None
        run_facts = {
            "n_train": n_train,
            "batch_size": batch_size,
            "horizon_epochs": horizon,
            "seed": self.seed,
            "data_fingerprint": _fingerprint(train_data),
        }

        if self.resume_from_checkpoint:
            like = {"params": params, "opt": opt_state, "best": params}
            loaded = load_latest_checkpoint(self.checkpoint_directory, like)
            if loaded is not None:
                arrays, state = loaded
                for name, value in run_facts.items():
                    if state["run"].get(name) != value:
                        what = "different training data" if name == "data_fingerprint" else ""
                        raise ConfigError(
                            f"cannot resume: checkpoint was written with {name}="
                            f"{state['run'].get(name)!r}, this run has {value!r}"
                            + (f" ({what} of the same size)" if what else "")
                            + "; resume with the same data, seed and batch settings, or "
                            "start afresh in another checkpoint_directory"
                        )
                params, opt_state = arrays["params"], arrays["opt"]
                history = {k: list(v) for k, v in state["history"].items()}
                best = {
                    "params": arrays["best"],
                    "epoch": state["best_epoch"],
                    "loss": state["best_loss"],
                    "stable": state["best_stable"],
                }
                monitor_best = state["monitor_best"]
                since_improved = state["since_improved"]
                lr_factor = state.get("lr_factor", 1.0)
                n_decays = state.get("n_decays", 0)
                stopped_early = state["stopped_early"]
                start_epoch = resumed_from = state["epoch"]

        epochs = range(start_epoch, self.num_epochs) if not stopped_early else range(0)
        bar = EpochProgress(self.num_epochs, start_epoch, enabled=self.progress)
        compile_s = 0.0
        ckpt_backend = self.checkpoint_backend
        if dp is not None:
            params_dp, opt_dp = dp.replicate(params), dp.replicate(opt_state)
            consts_dp = dp.replicate(consts)
            if dp.multi_process:
                # orbax's save is collective (every process must call it); process 0
                # alone writes plain equinox files, which every process can read.
                ckpt_backend = "equinox"
        if len(epochs) and not streaming and dp is None:
            # Compile before the first epoch, as its own stage; a repeat fit of the
            # same architecture and data shapes reuses the compiled step.
            bar.compiling("the training step")
            t0 = time.perf_counter()
            first_key = jax.random.fold_in(base_key, start_epoch)
            compiled, reused = _compiled(
                train_cache_key, train_epoch, (params, opt_state, train_data, first_key, consts)
            )
            train_epoch = _with_consts(compiled, consts)
            if has_val:
                evaluate(params, val_data, val_key, n_val)  # compiles the validation pass
            compile_s = time.perf_counter() - t0
            bar.compiled(reused)
        try:
            for epoch in epochs:
                key = jax.random.fold_in(base_key, epoch)
                if dp is None:
                    params, opt_state, train_loss = train_epoch(params, opt_state, train_data, key)
                else:
                    params_dp, opt_dp, train_loss = train_epoch(
                        params_dp, opt_dp, train_data, key, consts_dp
                    )
                    params = dp.local(params_dp)
                history["train_loss"].append(float(train_loss))
                history["learning_rate"].append(float(epoch_lrs[epoch]) * lr_factor)
                val_loss = (
                    float(evaluate(params, val_data, val_key, n_val)) if has_val else math.nan
                )
                history["val_loss"].append(val_loss)
                stable = True
                if epoch_metrics_fn is not None:
                    metrics = epoch_metrics_fn(combine_model(params, consts, bare))
                    for name, value in metrics.items():
                        history.setdefault(name, []).append(float(value))
                    for name, limit in thresholds.items():
                        if name not in metrics:
                            raise ConfigError(
                                f"stability threshold for {name!r} but epoch_metrics_fn returned "
                                f"only {sorted(metrics)}"
                            )
                        value = float(metrics[name])
                        if not (math.isfinite(value) and value <= limit):
                            stable = False
                    if thresholds:
                        history.setdefault("stable", []).append(float(stable))
                candidate = val_loss if has_val else float(train_loss)
                # Kept model: best validation loss, preferring stable epochs; without
                # validation data the last epoch (or last stable epoch) is kept.
                finite = math.isfinite(candidate)
                better = candidate < best["loss"] if has_val else True
                if (stable and (not best["stable"] or (finite and better))) or (
                    not stable and not best["stable"] and finite and better
                ):
                    best = {
                        "params": params,
                        "epoch": epoch + 1,
                        "loss": candidate,
                        "stable": stable,
                    }
                if finite and candidate < monitor_best - self.early_stopping_min_delta:
                    monitor_best, since_improved = candidate, 0
                else:
                    since_improved += 1
                if decays and n_decays < self.lr_decay_max:
                    if since_improved >= self.lr_decay_patience:
                        # a plateau: back to the best state, at a lower rate
                        lr_factor *= self.lr_decay_factor
                        n_decays += 1
                        since_improved = 0
                        params = best["params"]
                        opt_state = set_lr_factor(opt_state, lr_factor)
                        if dp is not None:
                            params_dp = dp.replicate(params)
                            opt_dp = dp.replicate(set_lr_factor(dp.local(opt_dp), lr_factor))
                elif (
                    self.early_stopping_patience is not None
                    and since_improved >= self.early_stopping_patience
                ):
                    stopped_early = True
                if self.checkpoint_directory is not None and dp is not None:
                    opt_state = dp.local(opt_dp)
                if self.checkpoint_directory is not None and jax.process_index() == 0:
                    save_checkpoint(
                        self.checkpoint_directory,
                        backend=ckpt_backend,
                        epoch=epoch + 1,
                        arrays={"params": params, "opt": opt_state, "best": best["params"]},
                        state={
                            "history": history,
                            "best_epoch": best["epoch"],
                            "best_loss": best["loss"],
                            "best_stable": best["stable"],
                            "monitor_best": monitor_best,
                            "since_improved": since_improved,
                            "stopped_early": stopped_early,
                            "lr_factor": lr_factor,
                            "n_decays": n_decays,
                            "run": run_facts,
                            "seed": self.seed,
                            "rng_key_data": np.asarray(jax.random.key_data(base_key)).tolist(),
                        },
                    )
                if self.checkpoint_directory is not None and dp is not None:
                    dp.barrier(f"orrery-sbi-checkpoint-{epoch + 1}")
                bar.epoch(float(train_loss), val_loss)
                if stopped_early:
                    break
        finally:
            note = None
            if stopped_early and history["train_loss"]:
                note = (
                    f"early stopping after epoch {len(history['train_loss'])}: no improvement "
                    f"for {since_improved} epochs; kept epoch {best['epoch']}"
                )
            bar.close(note)

        epochs_run = len(history["train_loss"])
        kept_params, kept_epoch = best["params"], best["epoch"]
        model_out = combine_model(kept_params, consts, bare)
        validation_metrics: dict[str, Any] = {
            "best_epoch": kept_epoch,
            "best_val_loss": best["loss"] if has_val else math.nan,
            "final_val_loss": history["val_loss"][-1] if epochs_run else math.nan,
            "final_train_loss": history["train_loss"][-1] if epochs_run else math.nan,
        }
        if kept_epoch:
            for name, values in history.items():
                if name not in ("train_loss", "val_loss", "learning_rate", "stable"):
                    validation_metrics[name] = values[kept_epoch - 1]
        unstable = [i + 1 for i, s in enumerate(history.get("stable", [])) if not s]
        metadata = dict(self.config())
        metadata.update(
            {
                "steps_per_epoch": steps_per_epoch,
                "effective_batch_size": batch_size,
                "n_train": n_train,
                "n_val": n_val,
                "epochs_run": epochs_run,
                "stopped_early": stopped_early,
                "resumed_from_epoch": resumed_from,
                "optimizer": "adamw" if self.weight_decay > 0 else "adam",
                "unstable_epochs": unstable,
                "kept_epoch_stable": bool(best["stable"]) if thresholds else None,
                "stability_thresholds": thresholds or None,
                "wall_time_s": time.perf_counter() - start_time,
                "compile_time_s": compile_s,
                "data_fingerprint": run_facts["data_fingerprint"],
                "devices": None if dp is None else len(dp.devices),
                "processes": None if dp is None else len({d.process_index for d in dp.devices}),
            }
        )
        return model_out, TrainingArtifacts(history, validation_metrics, metadata)


_EVAL_CHUNK = 1024
_JIT_CACHE: dict = {}
_JIT_CACHE_SIZE = 16


def _cached(key: tuple, build: Callable[[], Any]) -> Any:
    """Reuse jitted epoch functions across ``fit`` calls with identical statics.

    Least recently used entries go first: a hit moves its entry to the back, so the
    functions a fit has just used survive the entries that same fit adds. Models
    whose static part is unhashable are simply not cached.
    """
    try:
        hash(key)
    except TypeError:
        return build()
    if key in _JIT_CACHE:
        _JIT_CACHE[key] = _JIT_CACHE.pop(key)
    else:
        if len(_JIT_CACHE) >= _JIT_CACHE_SIZE:
            _JIT_CACHE.pop(next(iter(_JIT_CACHE)))
        _JIT_CACHE[key] = build()
    return _JIT_CACHE[key]


def _compiled(key: tuple, fn: Any, args: tuple) -> tuple[Any, bool]:
    """``fn`` compiled ahead of time for ``args``' shapes; cached; ``(compiled, reused)``."""
    leaves, treedef = jax.tree.flatten(args)
    full = ("aot", key, treedef, tuple((tuple(x.shape), str(x.dtype)) for x in leaves))

    def compile_():
        return fn.lower(*args).compile(compiler_options=compiler_options())

    try:
        hash(full)
    except TypeError:
        return compile_(), False
    reused = full in _JIT_CACHE
    return _cached(full, compile_), reused


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


def _with_consts(compiled: Any, consts: Any) -> Callable:
    """``epoch(params, opt_state, data, key)`` of a compiled epoch taking ``consts`` last."""

    def epoch(params, opt_state, data, key):
        return compiled(params, opt_state, data, key, consts)

    return epoch


def _strong(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.lax.convert_element_type(x, jnp.result_type(x)), tree)


def _make_train_epoch(static, optimizer, loss_fn, batch_transform, batch_size):
    """One jitted epoch: shuffle, then ``lax.scan`` over the full minibatches."""

    sgd_step = make_sgd_step(static, optimizer, loss_fn, batch_transform)

    @jax.jit
    def epoch_fn(params, opt_state, data, key, consts=None):
        n = jax.tree.leaves(data)[0].shape[0]
        n_batches = n // batch_size
        perm_key, step_key = jax.random.split(key)
        order = jax.random.permutation(perm_key, n)[: n_batches * batch_size]
        order = order.reshape(n_batches, batch_size)
        step_keys = jax.random.split(step_key, n_batches)

        def step(carry, xs):
            idx, k = xs
            params, opt_state, loss = sgd_step(*carry, _take(data, idx), k, consts)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (order, step_keys))
        return params, opt_state, jnp.mean(losses)

    return epoch_fn


def _make_evaluate(static, loss_fn, batch_size):
    """The jitted halves of `_evaluate`: a scan over full chunks, and one chunk.

    Both take the model's non-trained arrays (``consts``) as an input, so they can
    be cached per architecture and reused by every fit of it.
    """

    def chunk_loss(params, batch, key, consts):
        return loss_fn(combine_model(params, consts, static), batch, key)

    @functools.partial(jax.jit, compiler_options=compiler_options())
    def full_chunks(params, data, key, consts):
        n_chunks = jax.tree.leaves(data)[0].shape[0] // batch_size

        def body(total, i):
            idx = i * batch_size + jnp.arange(batch_size)
            return total + chunk_loss(params, _take(data, idx), key, consts), None

        total, _ = jax.lax.scan(body, jnp.zeros(()), jnp.arange(n_chunks))
        return total

    return full_chunks, jax.jit(chunk_loss, compiler_options=compiler_options())


def _evaluate(fns, batch_size, params, data, key, n, *, consts):
    """Exact mean loss over all ``n`` rows: full chunks in one scan, plus the remainder."""
    full_chunks, chunk_jit = fns
    n_chunks = n // batch_size
    total = 0.0
    # Host floats: arithmetic on device scalars would compile small programs of its own.
    if n_chunks:
        head = jax.tree.map(lambda a: a[: n_chunks * batch_size], data)
        total = float(full_chunks(params, head, key, consts)) * batch_size
    rem = n - n_chunks * batch_size
    if rem:
        tail = jax.tree.map(lambda a: a[n_chunks * batch_size :], data)
        total = total + float(chunk_jit(params, tail, key, consts)) * rem
    return total / n
