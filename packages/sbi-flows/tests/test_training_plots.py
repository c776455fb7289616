"""verbose_diagnostics: corner plots every diagnostics_plot_interval epochs, loss curves."""

import pytest

from orrery.interface import ConfigError
from orrery.sbi import ConditionalFlowPosterior

pytest.importorskip("matplotlib")

CONFIG = dict(
    embedding_dim=8,
    hidden_dim=16,
    num_coupling_layers=2,
    conditioner_depth=1,
    photometry_embedding_dim=8,
    parameter_space="cube",
    batch_size=32,
    num_epochs=2,
    seed=0,
    stable_cube_edge_hit_rate_threshold=None,
)


def test_verbose_diagnostics_write_pngs(tmp_path, unit_box_data):
    post = ConditionalFlowPosterior(
        2,
        **CONFIG,
        verbose_diagnostics=True,
        diagnostics_output_directory=str(tmp_path / "diag"),
        diagnostics_plot_interval=2,
    )
    artifacts = post.fit(unit_box_data(96))
    # The stability metrics still reach the history next to the plot hook.
    assert len(artifacts.history["inverse_forward_max_abs_error"]) == 2
    written = sorted(p.name for p in (tmp_path / "diag").iterdir())
    assert written == ["corner.png", "corner_epoch_0002.png", "loss_curves.png"]
    for name in written:
        assert (tmp_path / "diag" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verbose_diagnostics_need_a_directory(unit_box_data):
    post = ConditionalFlowPosterior(2, **CONFIG, verbose_diagnostics=True)
    with pytest.raises(ConfigError, match="diagnostics_output_directory"):
        post.fit(unit_box_data(96))
