"""``medsr --help`` stays fast: building the parser imports no torch, pydicom or web stack, and
``medsr.io`` imports pydicom only when a DICOM is read. Checked in a fresh interpreter through
``sys.modules`` (not by timing)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medsr.cli import COMMANDS, build_parser
from medsr.io.deidentify import KEY_ENV_VAR

HEAVY = ("torch", "pydicom", "rich", "fastapi", "uvicorn", "matplotlib", "scipy", "onnxruntime")


def loaded_after(code: str, modules: tuple[str, ...] = HEAVY) -> dict[str, bool]:
    """Which of ``modules`` are in ``sys.modules`` after running ``code`` in a new interpreter."""
    report = f"print(json.dumps({{m: m in sys.modules for m in {modules!r}}}))"
    probe = f"{code}\nimport json, sys\n{report}"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_building_the_whole_parser_imports_nothing_heavy():
    loaded = loaded_after("import medsr.cli\nmedsr.cli.build_parser()")
    assert not any(loaded.values()), {m for m, yes in loaded.items() if yes}


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["upscale", "--help"]])
def test_help_and_version_import_nothing_heavy(argv):
    code = (
        "import contextlib, io\nfrom medsr.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main({argv!r})"
    )
    loaded = loaded_after(code)
    assert not any(loaded.values()), {m for m, yes in loaded.items() if yes}


def test_help_does_not_look_up_the_version_or_load_the_prepare_pipeline():
    code = (
        "import contextlib, io\nfrom medsr.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])"
    )
    loaded = loaded_after(code, ("importlib.metadata", "medsr.data.manifest", "medsr.io.dicom"))
    assert not any(loaded.values()), {m for m, yes in loaded.items() if yes}


def test_version_is_printed_on_stdout(capsys):
    import medsr
    from medsr.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"medsr {medsr.__version__}\n"


def test_medsr_io_imports_pydicom_only_when_a_dicom_is_read(tmp_path, dicom_file):
    import numpy as np

    np.save(tmp_path / "a.npy", np.zeros((4, 5), np.float32))
    before = loaded_after(
        "import medsr.io\n"
        f"image = medsr.io.read({str(tmp_path / 'a.npy')!r})\n"
        f"medsr.io.write(image, {str(tmp_path / 'b.png')!r})"
    )
    assert not before["pydicom"] and not before["torch"]
    after = loaded_after(f"import medsr.io\nmedsr.io.read({str(dicom_file('CT_small.dcm'))!r})")
    assert after["pydicom"]  # the check can see pydicom when it is there


def test_every_command_builds_its_help():
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])


def test_the_key_variable_named_in_help_is_the_one_read(capsys):
    for name in ("deidentify", "upscale", "convert", "serve"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([name, "--help"])
        assert KEY_ENV_VAR in capsys.readouterr().out.replace("\n", " "), name
