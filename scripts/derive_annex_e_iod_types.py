"""Regenerate ``src/medsr/io/annex_e_iod_types.json`` from a JSON rendering of DICOM PS3.3.

Not part of the package; run by hand when the table or the standard edition changes:

    pip download --no-deps dicom-standard==0.1.0 -d /tmp/ds && cd /tmp/ds && \
        python -m zipfile -e dicom_standard-0.1.0-py3-none-any.whl x
    python scripts/derive_annex_e_iod_types.py /tmp/ds/x/dicom_standard-0.1.0.data/data/standard

For every IOD and every attribute whose Basic Profile action is a combined code (Z/D, X/Z,
X/D, X/Z/D, X/Z/U*), it records the attribute's type where it is 1/1C (level 1) or 2/2C
(level 2), keyed by the path of tags from the top level (functional group macros under both
the shared and the per-frame functional groups sequences). Type 3 is the default.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "src" / "medsr" / "io" / "annex_e.csv"
OUT = REPO / "src" / "medsr" / "io" / "annex_e_iod_types.json"
FUNCTIONAL_GROUPS = ("52009229", "52009230")  # shared, per-frame
LEVELS = {"1": 1, "1C": 1, "2": 2, "2C": 2}


def combined_tags() -> set[str]:
    lines = [line for line in TABLE.read_text().splitlines() if not line.startswith("#")]
    return {row["tag"] for row in csv.DictReader(lines) if "/" in row["action"]}


def paths(records: list[dict], owner: str, wanted: set[str]) -> dict[str, list[tuple[str, int]]]:
    """``{module or macro id: [(path, level), ...]}`` for the wanted leaf tags."""
    found: dict[str, list[tuple[str, int]]] = {}
    for record in records:
        tags = [t.upper() for t in record["path"].split(":")[1:]]
        level = LEVELS.get(record["type"])
        if tags and tags[-1] in wanted and level is not None:
            found.setdefault(record[owner], []).append((":".join(tags), level))
    return found


def main(folder: Path) -> None:
    def load(name: str) -> list[dict]:
        return json.loads((folder / name).read_text())

    wanted = combined_tags()
    by_module = paths(load("module_to_attributes.json"), "moduleId", wanted)
    by_macro = paths(load("macro_to_attributes.json"), "macroId", wanted)
    types: dict[str, dict[str, int]] = {}

    def put(ciod: str, path: str, level: int) -> None:
        known = types.setdefault(ciod, {})
        known[path] = min(known.get(path, 9), level)

    for row in load("ciod_to_modules.json"):
        for path, level in by_module.get(row["moduleId"], []):
            put(row["ciodId"], path, level)
    for row in load("ciod_to_fg_macros.json"):
        for path, level in by_macro.get(row["macroId"], []):
            for group in FUNCTIONAL_GROUPS:
                put(row["ciodId"], f"{group}:{path}", level)
    ciod_ids = {c["name"]: c["id"] for c in load("ciods.json")}
    sop_classes = {s["id"]: ciod_ids[s["ciod"]] for s in load("sops.json") if s["ciod"] in ciod_ids}
    data = {
        "_comment": (
            "Derived from DICOM PS3.3 (2020 edition, innolitics dicom-standard JSON, MIT) by "
            "scripts/derive_annex_e_iod_types.py: for each IOD, the type (1: 1 or 1C, 2: 2 or "
            "2C) of every attribute whose Basic Profile action in annex_e.csv is a combined "
            "code, keyed by its path of tags from the top level (sequence tags joined by "
            "colons). Attributes not listed are type 3 or not in the IOD."
        ),
        "sop_classes": sop_classes,
        "types": types,
    }
    OUT.write_text(json.dumps(data, indent=0, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{len(sop_classes)} SOP classes, {sum(map(len, types.values()))} paths -> {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
