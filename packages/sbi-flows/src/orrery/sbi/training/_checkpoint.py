"""Atomic, resumable trainer checkpoints (orbax or equinox serialisation).

A checkpoint is a directory ``checkpoint_<epoch>`` holding the array state (model
parameters, optimizer state, best parameters, RNG key) and ``trainer_state.json``
(epoch, history, early-stopping bookkeeping). It is assembled in a temporary
sibling directory and renamed into place only once complete, so a process killed
mid-write never damages the previous checkpoint; a directory without the JSON
marker is never considered.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, TypeGuard

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from orrery.interface import ArtifactError, ConfigError, check_choice, read_json, require

CHECKPOINT_BACKENDS = ("auto", "orbax", "equinox")
_STATE_FILE = "trainer_state.json"
_PREFIX = "checkpoint_"
_TMP_PREFIX = ".tmp-"
_KEEP = 2
#: Largest ``trainer_state.json`` read (a history of ~10 metrics over 100,000 epochs fits).
_MAX_STATE_BYTES = 64 * 2**20


def resolve_backend(name: str) -> str:
    """Map ``"auto"`` to ``"orbax"`` when orbax is importable, else ``"equinox"``."""
    check_choice(name, CHECKPOINT_BACKENDS, "checkpoint_backend")
    if name == "auto":
        # find_spec does not import orbax (slow); the import happens on first use.
        try:
            found = importlib.util.find_spec("orbax.checkpoint") is not None
        except ImportError:
            found = False
        return "orbax" if found else "equinox"
    if name == "orbax":
        _orbax()
    return name


def _orbax() -> Any:
    feature = "SBITrainer(checkpoint_backend='orbax')"
    return require("orbax.checkpoint", extra="sbi-flows[orbax]", feature=feature)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_arrays(backend: str, directory: Path, tree: Any) -> None:
    if backend == "equinox":
        with open(directory / "state.eqx", "wb") as handle:
            eqx.tree_serialise_leaves(handle, tree)
            handle.flush()
            os.fsync(handle.fileno())
        return
    ocp = _orbax()
    leaves = {f"{i:05d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(tree))}
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save((directory / "state").absolute(), leaves)
    checkpointer.wait_until_finished()
    checkpointer.close()


def _read_arrays(backend: str, directory: Path, like: Any) -> Any:
    if backend == "equinox":
        return eqx.tree_deserialise_leaves(directory / "state.eqx", like)
    ocp = _orbax()
    checkpointer = ocp.StandardCheckpointer()
    try:
        restored = checkpointer.restore((directory / "state").absolute())
    finally:
        checkpointer.close()
    leaves, treedef = jax.tree.flatten(like)
    if len(restored) != len(leaves):
        raise ArtifactError(
            f"checkpoint {directory} holds {len(restored)} arrays; expected {len(leaves)}"
        )
    new = [
        jnp.asarray(restored[f"{i:05d}"], dtype=leaf.dtype).reshape(leaf.shape)
        for i, leaf in enumerate(leaves)
    ]
    return jax.tree.unflatten(treedef, new)


def save_checkpoint(
    directory: str | os.PathLike, *, backend: str, epoch: int, arrays: Any, state: dict
) -> Path:
    """Atomically write the checkpoint for ``epoch`` (1-based count of finished epochs)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        _write_arrays(backend, tmp, arrays)
        payload = dict(state, epoch=int(epoch), backend=backend)
        with open(tmp / _STATE_FILE, "w") as handle:
            json.dump(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(tmp)
        final = root / f"{_PREFIX}{epoch:06d}"
        if final.exists():
            trash = root / f"{_TMP_PREFIX}old-{uuid.uuid4().hex}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-_KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first."""
    root = Path(directory)
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(_PREFIX) and (p / _STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda p: p.name)


def _read_state(path: Path) -> dict[str, Any]:
    """``trainer_state.json`` of the checkpoint ``path``, size-limited and fully checked.

    Raises:
        ArtifactError: naming the file and the entry that is missing, of the wrong
            type, out of range or inconsistent with the checkpoint's epoch.
    """
    file = path / _STATE_FILE
    state = read_json(file, max_bytes=_MAX_STATE_BYTES)  # size and nesting limited
    if not isinstance(state, dict):
        raise ArtifactError(f"{file}: expected a JSON object, got {type(state).__name__}")
    digits = path.name[len(_PREFIX) :]
    if not (digits.isascii() and digits.isdigit()):
        raise ArtifactError(f"{path}: a checkpoint folder is named {_PREFIX}<epoch>")
    check_trainer_state(state, str(file), int(digits))
    return state


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_trainer_state(state: dict[str, Any], file: str, epoch: int) -> None:
    """Every entry the trainer resumes from, type- and range-checked against ``epoch``.

    ``epoch`` is the count of finished epochs in the checkpoint's directory name;
    the state must record the same, one history entry per epoch in each list, and
    a best epoch and patience counters within it.

    Raises:
        ArtifactError: naming ``file`` and the first bad entry.
    """

    def bad(key: str, expected: str) -> ArtifactError:
        found = repr(state[key]) if key in state else "missing"
        if len(found) > 80:
            found = found[:77] + "..."
        return ArtifactError(f"{file}: entry {key!r} is {found}; expected {expected}")

    if not (_is_int(state.get("epoch")) and state["epoch"] == epoch):
        raise bad("epoch", f"the epoch {epoch} of the checkpoint's folder name")
    for key in ("best_epoch", "since_improved", "n_decays"):
        if not (_is_int(state.get(key)) and 0 <= state[key] <= epoch):
            raise bad(key, f"an integer in [0, {epoch}]")
    for key in ("best_stable", "stopped_early"):
        if not isinstance(state.get(key), bool):
            raise bad(key, "true or false")
    if not _is_number(state.get("best_loss")):  # NaN when the first stable epoch's was
        raise bad("best_loss", "a number")
    if not (_is_number(state.get("monitor_best")) and not math.isnan(state["monitor_best"])):
        raise bad("monitor_best", "a number (not NaN)")
    factor = state.get("lr_factor")
    if not (_is_number(factor) and 0 < factor <= 1):
        raise bad("lr_factor", "a number in (0, 1]")
    if state.get("backend") not in ("orbax", "equinox"):
        raise bad("backend", "'orbax' or 'equinox'")
    if not isinstance(state.get("run"), dict):
        raise bad("run", "an object of the run's facts")
    history = state.get("history")
    if not isinstance(history, dict) or not {"train_loss", "val_loss", "learning_rate"} <= set(
        history
    ):
        raise bad("history", "an object with train_loss, val_loss and learning_rate lists")
    for name, values in history.items():
        if not (
            isinstance(values, list) and len(values) == epoch and all(_is_number(v) for v in values)
        ):
            raise ArtifactError(
                f"{file}: history[{name!r}] must be a list of {epoch} numbers (one per "
                "finished epoch)"
            )


def load_latest_checkpoint(directory: str | os.PathLike, like: Any) -> tuple[Any, dict] | None:
    """Load the newest readable checkpoint as ``(arrays, state)``; ``None`` if there is none.

    ``like`` is a pytree with the structure, shapes and dtypes of the saved arrays.
    Every entry of the trainer state is checked (`check_trainer_state`). A damaged
    newest checkpoint falls back to the one before it.

    Raises:
        ArtifactError: no checkpoint is readable (each one's problem is named).
    """
    errors = []
    for path in reversed(list_checkpoints(directory)):
        try:
            state = _read_state(path)
            arrays = _read_arrays(state["backend"], path, like)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            errors.append(f"{path.name}: {err}")
            continue
        return arrays, state
    if errors:
        raise ArtifactError("no readable checkpoint in {}: {}".format(directory, "; ".join(errors)))
    return None


def snapshot(
    history: dict[str, list[float]],
    kept: dict[str, Any],
    run_facts: dict[str, Any],
    *,
    seed: int,
    key: jax.Array,
) -> dict[str, Any]:
    """The JSON state of a checkpoint: history, the `KeptState` counters and the run's facts."""
    return {
        "history": history,
        **kept,
        "run": run_facts,
        "seed": seed,
        "rng_key_data": np.asarray(jax.random.key_data(key)).tolist(),
    }


def resume(
    directory: str | os.PathLike, like: Any, run_facts: dict[str, Any]
) -> tuple[Any, dict[str, Any]] | None:
    """The newest checkpoint's ``(arrays, state)`` if it was written by this same run.

    ``None`` when the directory holds no checkpoint.

    Raises:
        ConfigError: the checkpoint was written with other data, seed or batch settings.
        ArtifactError: no checkpoint is readable.
    """
    loaded = load_latest_checkpoint(directory, like)
    if loaded is None:
        return None
    arrays, state = loaded
    for name, value in run_facts.items():
        if state["run"].get(name) != value:
            what = (
                " (different training data of the same size)" if name == "data_fingerprint" else ""
            )
            raise ConfigError(
                f"cannot resume: checkpoint was written with {name}="
                f"{state['run'].get(name)!r}, this run has {value!r}{what}; resume with the "
                "same data, seed and batch settings, or start afresh in another "
                "checkpoint_directory"
            )
    return arrays, state
