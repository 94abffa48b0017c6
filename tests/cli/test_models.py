"""``medsr models``."""

from __future__ import annotations

import json

from medsr.cli import main
from medsr.models import DISCRIMINATORS, GENERATORS


def test_models_lists_both_tables_with_counts(capsys):
    assert main(["models", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    generators = {g["arch"]: g for g in data["generators"]}
    assert list(generators) == list(GENERATORS)
    assert generators["rrdbnet"]["params_3ch"] == 16_697_987
    assert generators["rrdbnet"]["scales"] == [1, 2, 4, 8]
    assert generators["bicubic"]["params_1ch"] == 0
    assert generators["edsr"]["params_1ch"] < generators["edsr"]["params_3ch"]
    discriminators = {d["arch"]: d for d in data["discriminators"]}
    assert list(discriminators) == list(DISCRIMINATORS)
    assert discriminators["medsrgan"]["paired"] and not discriminators["unet"]["paired"]
    from medsr.models import PRETRAINED

    assert [p["key"] for p in data["pretrained"]] == list(PRETRAINED)
    assert all(p["scale"] in (2, 3, 4) and p["license"] for p in data["pretrained"])


def test_models_text_and_scale_without_support(capsys):
    assert main(["models", "--scale", "3"]) == 0
    out = capsys.readouterr().out
    assert "Generators (parameters at x3" in out and "Discriminators" in out
    rrdb_line = next(line for line in out.splitlines() if line.startswith("rrdbnet"))
    assert " - " in rrdb_line  # RRDBNet has no x3
    assert "Pretrained weights" in out and "medsr-edsr-tiny-x2" in out


def test_models_arch_details_and_unknown(capsys):
    assert main(["models", "edsr"]) == 0
    out = capsys.readouterr().out
    assert "num_blocks" in out and "res_scale" in out and "scales: 2, 3, 4, 8" in out
    assert main(["models", "edsrr"]) == 2
    assert "unknown architecture 'edsrr'" in capsys.readouterr().err
