"""Loading never imports or resolves anything that is not on the allow-list (issue 16)."""

import sys

import pytest

from orrery.interface import ArtifactError, save_artifact
from orrery.parax import Parameter, load

PAYLOAD = """import pathlib
pathlib.Path({marker!r}).write_text("pwned")


def run(*a):
    return 0


class Evil:
    pass
"""


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """An artifact directory with a payload module inside and next to it, both on sys.path."""
    marker = tmp_path / "marker"
    art = tmp_path / "art"
    art.mkdir()
    for where in (tmp_path, art):
        (where / "payload.py").write_text(PAYLOAD.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(art))
    sys.modules.pop("payload", None)
    yield art, marker
    sys.modules.pop("payload", None)


def _write(path, node):
    save_artifact(path, kind="parax.tree", config={"tree": node}, arrays={})


@pytest.mark.parametrize(
    "node",
    [
        {"__t": "module", "cls": "payload:Evil", "fields": {}},
        {"__t": "module", "cls": "payload.sub:Evil", "fields": {}},
        {"__t": "module", "cls": "orrery.parax.payload:Evil", "fields": {}},
        {"__t": "func", "ref": "payload:run"},
        {"__t": "func", "ref": "numpy.payload:run"},
        {"__t": "func", "ref": "jax.payload:run"},
        {"__t": "func", "ref": "os:system"},
        {"__t": "module", "cls": "os:system", "fields": {}},
        {"__t": "func", "ref": "numpy:load"},
        {"__t": "func", "ref": "builtins:eval"},
        {"__t": "module", "cls": "subprocess:Popen", "fields": {}},
    ],
)
def test_planted_payload_is_never_imported(planted, node):
    art, marker = planted
    target = art / "model"
    _write(target, {"__t": "list", "items": [node]})
    with pytest.raises(ArtifactError, match="allow-list"):
        load(target)
    assert not marker.exists()
    assert "payload" not in sys.modules


def test_parameter_from_json_uses_the_same_allow_list(planted):
    _, marker = planted
    doc = '{"value": 1.0, "transform": {"__t": "module", "cls": "payload:Evil", "fields": {}}}'
    with pytest.raises(ArtifactError, match="allow-list"):
        Parameter.from_json(doc)
    doc = '{"value": 1.0, "transform": {"__t": "func", "ref": "os:system"}}'
    with pytest.raises(ArtifactError, match="allow-list"):
        Parameter.from_json(doc)
    assert not marker.exists() and "payload" not in sys.modules


def test_look_alike_package_names_are_not_on_the_allow_list(monkeypatch):
    import dataclasses
    import types

    from orrery.parax._registry import lookup_class

    @dataclasses.dataclass
    class Gadget:
        x: int = 0

    for name in ("distreqx_evil", "orrery.paraxevil"):
        mod = types.ModuleType(name)
        Gadget.__module__, Gadget.__qualname__ = name, "Gadget"
        mod.Gadget = Gadget
        monkeypatch.setitem(sys.modules, name, mod)
        assert lookup_class(f"{name}:Gadget") is None
    assert lookup_class("orrery.parax.parameter:Parameter") is Parameter
