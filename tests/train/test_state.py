"""Atomic training-state files and RNG capture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from medsr.errors import CheckpointError
from medsr.train import state as st


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "state" / "last.pt"
    payload = {"global_step": 7, "weights": {"w": torch.arange(3.0)}, "rng": st.capture_rng()}
    st.save_state(payload, path)
    loaded = st.load_state(path)
    assert loaded["format"] == st.STATE_FORMAT and loaded["global_step"] == 7
    assert torch.equal(loaded["weights"]["w"], torch.arange(3.0))
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    st.save_state({"global_step": 1}, path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(st.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        st.save_state({"global_step": 2}, path)
    monkeypatch.undo()
    assert st.load_state(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_load_rejects_missing_foreign_and_torn_files(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        st.load_state(tmp_path / "none.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": 1}, foreign)
    with pytest.raises(CheckpointError, match="not a medsr training state"):
        st.load_state(foreign)
    torn = tmp_path / "torn.pt"
    st.save_state({"global_step": 1}, torn)
    torn.write_bytes(torn.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot read"):
        st.load_state(torn)


def test_rng_capture_restores_every_generator(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    saved = st.capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    path = tmp_path / "s.pt"
    st.save_state({"rng": saved}, path)  # through the weights-only file format
    st.restore_rng(st.load_state(path)["rng"])
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_a_save_removes_the_temporary_files_of_a_killed_save(tmp_path):
    path = tmp_path / "state" / "last.pt"
    path.parent.mkdir()
    stale = path.parent / ".last.pt.x1y2z3w4.tmp"
    stale.write_bytes(b"torn")
    st.save_state({"global_step": 1}, path)
    assert not stale.exists() and st.load_state(path)["global_step"] == 1
