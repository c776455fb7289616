"""One process of a 2-process JAX cluster on 127.0.0.1 (run by test_multiprocess.py).

Usage: ``python _mp_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR [PLATFORM]``.

One pair of processes runs every scenario, so the cluster starts once. Every
check runs twice in this process: once over all devices of the cluster
(``devices="all"``: the devices of every process) and once on this process's
first device alone, the single-process reference. The worker gathers each
sharded result to every process, compares it with the reference and writes
the largest differences (and the seconds each step took) to
``OUT_DIR/result_<PROCESS_ID>.json``; the test checks both files. Any
exception exits non-zero.

Sizes are the smallest that still exercise each path: a few optimizer steps,
tiny flows with the per-epoch stability diagnostics off (they are not a sharded
path), and the data-parallel fit and its resume sharing one configuration, so
the resume reuses the compiled program (the trainer caches it per architecture).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path


def main() -> None:
    pid, nproc, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    platform = sys.argv[5] if len(sys.argv) > 5 else "cpu"
    t_start = time.perf_counter()
    import jax

    if platform == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid
    )
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental.multihost_utils import process_allgather, sync_global_devices

    assert jax.process_count() == nproc, jax.process_count()
    local0 = jax.local_devices()[0]
    result: dict = {
        "process_index": jax.process_index(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "diffs": {},
        "seconds": {},
        "process_local": {},  # results handed back as global arrays (not gathered)
    }

    def record(name: str, sharded, single) -> None:
        worst = 0.0
        for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single), strict=True):
            # Sharded results span both processes: gather them; local ones are whole.
            if isinstance(a, jax.Array) and not a.is_fully_addressable:
                result["process_local"][name] = True
                a = process_allgather(a, tiled=True)
            a = np.asarray(a)
            b = np.asarray(b)
            assert a.shape == b.shape, (name, a.shape, b.shape)
            worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)))
        result["diffs"][name] = worst

    def timed(name: str, fn):
        t0 = time.perf_counter()
        value = fn()
        result["seconds"][name] = round(time.perf_counter() - t0, 3)
        return value

    def local(fn):
        with jax.default_device(local0):
            return fn()

    result["seconds"]["start"] = round(time.perf_counter() - t_start, 3)

    # --- ensemble: EnsembleMAP, EnsembleVI and ensemble_predict ---------------------
    import numpyro
    import numpyro.distributions as dist
    import optax

    from orrery.ensemble import EnsembleMAP, EnsembleVI, ensemble_predict

    t = jnp.linspace(-1, 1, 16)
    x = np.asarray(jnp.stack([jnp.ones_like(t), t], 1))
    y = np.asarray(x @ np.array([0.7, -1.3]) + 0.3 * np.sin(7 * np.asarray(t)))

    def log_joint(p, xb, yb):
        return -0.5 * jnp.sum((yb - xb @ p["w"]) ** 2), -0.5 * jnp.sum(p["w"] ** 2)

    def init(k):
        return {"w": jax.random.normal(k, (2,))}

    opt = optax.adam(0.05)
    key = jax.random.PRNGKey(0)
    n_members = 2 * jax.device_count()

    def ens_map(**kw):
        runner = EnsembleMAP(log_joint, init, opt, ensemble_size=n_members, **kw)
        return runner.run(key, 8, x, y, batch_size=8)

    map1 = timed("ensemble_map.single", lambda: local(ens_map))
    mapn = timed("ensemble_map", lambda: ens_map(devices="all"))
    record("ensemble_map.params", mapn.params, map1.params)
    record("ensemble_map.losses", mapn.losses, map1.losses)
    record("ensemble_map.skipped_steps", mapn.skipped_steps, map1.skipped_steps)

    def predict(p, xn):
        return xn @ p["w"]

    pred1 = local(lambda: ensemble_predict(map1.params, predict, x))
    predn = timed(
        "ensemble_predict", lambda: ensemble_predict(mapn.params, predict, x, devices="all")
    )
    record("ensemble_predict", predn, pred1)

    def model(x, y=None):
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

    guide = numpyro.infer.autoguide.AutoNormal(model)

    def ens_vi(**kw):
        return EnsembleVI(model, guide, opt, ensemble_size=n_members, **kw).run(key, 4, x, y)

    vi1 = timed("ensemble_vi.single", lambda: local(ens_vi))
    vin = timed("ensemble_vi", lambda: ens_vi(devices="all"))
    record("ensemble_vi.params", vin.params, vi1.params)
    record("ensemble_vi.losses", vin.losses, vi1.losses)

    # --- SBI: data-parallel training (memory and store), resume, batch sampling --------
    import concurrent.futures as cf

    import equinox as eqx

    from orrery.sbi import ConditionalFlowPosterior, SimulationDataset, simulate
    from orrery.sbi.training import _streaming

    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(200, 2))
    ds = SimulationDataset.from_arrays(theta, theta + 0.1 * rng.normal(size=theta.shape))

    def posterior(num_epochs: int, **kw):
        return ConditionalFlowPosterior(
            2,
            embedding_dim=4,
            hidden_dim=8,
            num_coupling_layers=1,
            batch_size=32,
            seed=3,
            num_epochs=num_epochs,
            lr_schedule_total_epochs=2,
            stable_inverse_forward_max_abs_error_threshold=None,
            stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
            stable_cube_edge_hit_rate_threshold=None,
            **kw,
        )

    def arrays(post):
        return jax.tree.leaves(eqx.filter(post.model, eqx.is_array))

    def history(art):
        return [np.asarray(art.history[k]) for k in ("train_loss", "val_loss")]

    ckpt = out / "checkpoints"
    ref = posterior(2)
    ref_art = timed("sbi_fit.single", lambda: local(lambda: ref.fit(ds)))
    # Checkpointing on (an empty directory: a fresh start); the resume below uses
    # the same configuration, so it reuses this fit's compiled program.
    dp = posterior(2, checkpoint_directory=str(ckpt), resume_from_checkpoint=True)
    dp_art = timed("sbi_fit", lambda: dp.fit(ds, devices="all"))
    assert dp_art.trainer_metadata["processes"] == nproc, dp_art.trainer_metadata
    assert dp_art.trainer_metadata["resumed_from_epoch"] is None, dp_art.trainer_metadata
    record("sbi_fit.params", arrays(dp), arrays(ref))
    record("sbi_fit.history", history(dp_art), history(ref_art))

    # Process 0 wrote the checkpoints of epochs 1 and 2: drop the last, then every
    # process resumes from process 0's epoch-1 checkpoint.
    if pid == 0:
        shutil.rmtree(sorted(ckpt.glob("checkpoint_*"))[-1])
    sync_global_devices("orrery-mp-checkpoint-dropped")
    resumed = posterior(2, checkpoint_directory=str(ckpt), resume_from_checkpoint=True)
    res_art = timed("sbi_resume", lambda: resumed.fit(ds, devices="all"))
    assert res_art.trainer_metadata["resumed_from_epoch"] == 1, res_art.trainer_metadata
    record("sbi_resume.params", arrays(resumed), arrays(ref))
    record("sbi_resume.history", history(res_art), history(ref_art))

    # A campaign store that both processes open: process 0 writes it, then all read.
    store = out / "store"
    if pid == 0:

        def sim(th):
            return {"x": th + 0.1 * np.sin(5 * th)}

        simulate(
            sim,
            [[-1.0, 1.0], [-1.0, 1.0]],
            200,
            store,
            chunk_size=50,
            seed=1,
            executor=cf.ThreadPoolExecutor(1),
        )
    sync_global_devices("orrery-mp-store-written")
    # a small budget: windows of a batch or two, so every epoch reads by position
    streamed = SimulationDataset.from_store(store, memory_budget=20_000)
    assert streamed.window_rows < streamed.n_train, streamed.window_rows
    parts = set()
    original = _streaming.SplitStream.epoch_groups

    def spy(self, *args, part=(0, 1), **kwargs):
        for group in original(self, *args, part=part, **kwargs):
            parts.add((*part, int(jax.tree.leaves(group)[0].shape[1])))
            yield group

    _streaming.SplitStream.epoch_groups = spy
    sref = posterior(2)
    sref_art = timed("sbi_store.single", lambda: local(lambda: sref.fit(streamed)))
    parts.clear()
    sdp = posterior(2)
    sdp_art = timed("sbi_store", lambda: sdp.fit(streamed, devices="all"))
    _streaming.SplitStream.epoch_groups = original
    result["store_parts"] = sorted(parts)  # [(i, c, columns read per batch)]
    record("sbi_store.params", arrays(sdp), arrays(sref))
    record("sbi_store.history", history(sdp_art), history(sref_art))

    emb = rng.normal(size=(10, 4)).astype(np.float32)  # 10 rows over 4 devices: padded
    draws1 = local(lambda: ref.batch_sample_posterior(emb, 8, base_seed=5))
    drawsn = timed(
        "batch_sample_posterior",
        lambda: ref.batch_sample_posterior(emb, 8, base_seed=5, devices="all"),
    )
    record("batch_sample_posterior", drawsn, draws1)

    result["seconds"]["total"] = round(time.perf_counter() - t_start, 3)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"result_{pid}.json").write_text(json.dumps(result))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
