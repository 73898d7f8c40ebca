"""The compiled-model file contract: TorchScript + JSON metadata, clear errors for unusable files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ethanol, make_model, water_box

from transip_md.model import FORMAT_VERSION, ModelFileError, export, load_compiled, predict
from transip_md.model.contract import METADATA_FILE


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_compiled_file_reproduces_eager_model_exactly(tmp_path, cutoff):
    model = make_model(cutoff)
    path = export(model, tmp_path / "m.pt", {"data_hash": "abc"})
    compiled = load_compiled(path)
    atoms = ethanol() if cutoff is None else water_box(2)
    a = predict(model, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, 1, 2)
    b = predict(compiled, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, 1, 2)
    # the same float64 operations (eager vs TorchScript): equal to rounding, not necessarily bit for bit
    assert a.energy == pytest.approx(b.energy, rel=1e-13, abs=1e-12)
    np.testing.assert_allclose(a.forces, b.forces, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.energies, b.energies, rtol=1e-13, atol=1e-12)


def test_metadata_round_trips(tmp_path):
    model = make_model(4.0)
    path = export(model, tmp_path / "m.pt", {"data_hash": "abc", "epochs": 3})
    meta = load_compiled(path).metadata
    assert meta["format_version"] == 2  # format 3 is written only for learned-spread models (test_charge_spread.py)
    assert meta["elements"] == [1, 6, 7, 8]
    assert meta["cutoff"] == 4.0
    assert meta["n_layers"] == model.config.n_layers
    assert meta["dtype"] == "float64"
    assert meta["uses_charge_spin"] is True
    assert meta["reference_energies"] == {"1": -13.6, "6": -1029.0, "7": -1484.0, "8": -2041.0}
    assert meta["provenance"]["data_hash"] == "abc" and meta["provenance"]["epochs"] == 3
    assert meta["config"] == model.config.to_dict()
    assert load_compiled(path).config == model.config


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_compiled(tmp_path / "nope.pt")


def test_empty_and_truncated_files(tmp_path):
    good = export(make_model(None), tmp_path / "m.pt")
    data = good.read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load_compiled(tmp_path / "empty.pt")
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or foreign"):
        load_compiled(tmp_path / "cut.pt")


def test_foreign_files(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ModelFileError, match="truncated or foreign"):
        load_compiled(tmp_path / "text.pt")
    plain = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(plain, str(tmp_path / "plain.pt"))
    with pytest.raises(ModelFileError, match="without transip-md metadata"):
        load_compiled(tmp_path / "plain.pt")
    torch.jit.save(plain, str(tmp_path / "other.pt"), _extra_files={METADATA_FILE: json.dumps({"format": "x"})})
    with pytest.raises(ModelFileError, match="not a transip-md model file"):
        load_compiled(tmp_path / "other.pt")


def test_newer_format_is_refused(tmp_path):
    path = export(make_model(None), tmp_path / "m.pt")
    extra = {METADATA_FILE: ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra[METADATA_FILE])
    meta["format_version"] = FORMAT_VERSION + 1
    torch.jit.save(module, str(tmp_path / "new.pt"), _extra_files={METADATA_FILE: json.dumps(meta)})
    with pytest.raises(ModelFileError, match="newer than this transip-md"):
        load_compiled(tmp_path / "new.pt")


def test_model_file_holds_no_pickle_of_python_objects(tmp_path):
    """The file is TorchScript: it loads with torch.jit.load, not with pickle-based torch.load."""
    path = export(make_model(None), tmp_path / "m.pt")
    with pytest.raises(Exception):  # noqa: B017 - any failure of the weights-only unpickler is fine
        torch.load(path, weights_only=True)
    assert isinstance(torch.jit.load(str(path)), torch.jit.ScriptModule)


def test_unknown_element_inside_the_compiled_model(tmp_path):
    compiled = load_compiled(export(make_model(None), tmp_path / "m.pt"))
    with pytest.raises(Exception, match="atomic number 9 is not in this model"):  # torch.jit.Error from TorchScript
        predict(compiled, np.array([6, 9]), np.array([[0.0, 0, 0], [1.4, 0, 0]]))


def test_file_without_the_engine_entry_point_is_refused(tmp_path):
    """A TorchScript file with valid metadata but no energy_and_gradient (older transip-md) gets a clear error."""
    path = export(make_model(None), tmp_path / "m.pt")
    extra = {METADATA_FILE: ""}
    torch.jit.load(str(path), _extra_files=extra)
    plain = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(plain, str(tmp_path / "old.pt"), _extra_files={METADATA_FILE: extra[METADATA_FILE]})
    with pytest.raises(ModelFileError, match="lacks the energy_and_gradient method"):
        load_compiled(tmp_path / "old.pt")


def _rewrite_metadata(src, dst, **changes):
    extra = {METADATA_FILE: ""}
    module = torch.jit.load(str(src), _extra_files=extra)
    meta = json.loads(extra[METADATA_FILE])
    meta.update(changes)
    torch.jit.save(module, str(dst), _extra_files={METADATA_FILE: json.dumps(meta)})
    return dst


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"cutoff": 2.0}, r"metadata cutoff 2.0 Å disagrees with the compiled module's cutoff 4.0 Å"),
        ({"cutoff": None}, r"metadata cutoff None Å disagrees"),
        ({"elements": [1, 6, 8, 7]}, r"metadata elements \[1, 6, 8, 7\] disagree"),
    ],
)
def test_edited_metadata_is_refused(tmp_path, changes, match):
    """Issue 14 #6: a metadata cutoff edited 4 -> 2 Å was accepted and changed the energy."""
    path = export(make_model(4.0), tmp_path / "m.pt")
    edited = _rewrite_metadata(path, tmp_path / "edited.pt", **changes)
    with pytest.raises(ModelFileError, match=match):
        load_compiled(edited)


def test_older_format_version_is_refused(tmp_path):
    """A version-1 file (before the priors and the natoms argument) gets a message naming the versions."""
    path = export(make_model(4.0), tmp_path / "m.pt")
    old = _rewrite_metadata(path, tmp_path / "v1.pt", format_version=1)
    with pytest.raises(ModelFileError, match="model format version 1 was written by an older transip-md"):
        load_compiled(old)
