#!/usr/bin/env bash
# The training data of the shipped models (docs/pretrained.md): every modality of
# ../shared/data except the sources kept out as the external test set (brain-mri-stroke,
# brain-mri-thick, body-ct, chest-xray-covid), plus two real radiographs of pydicom-data.
#   bash scripts/prepare_pretrained_data.sh [SHARED_DATA] [OUT]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/data/all}
CR=runs/pydicom-cr
# pydicom-data's CR files, one folder each (a folder per subject)
for name in RG1 RG3; do
    mkdir -p "$CR/$name"
    ln -sf "$(python -c "from pydicom.data import get_testdata_file as g; print(g('${name}_UNCR.dcm'))")" \
        "$CR/$name/${name}_UNCR.dcm"
done
# subjects: spine files are COHORT_NUMBER, BraTS folders patNNNN, the other files SUBJECT_...
medsr prepare "$DATA/spine-mri" "$DATA/brain-mri-brats2013" "$DATA/brain-mri-child" \
    "$DATA/brain-mri-niivue" "$DATA/cardiac-mri" "$DATA/head-ct" "$DATA/chest-ct" \
    "$DATA/chest-xray" "$CR" --modality pydicom-cr=DX \
    --subject-regex '^(?P<subject>(?:IVD|VB\d*)_\d+|[^_/.]+)' --salt medsr-pretrained \
    --out "$OUT"
