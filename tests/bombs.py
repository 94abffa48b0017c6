"""Decompression bombs made at test time (a few hundred KB on disk, never the inflated bytes)."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.data import get_testdata_file


def deflate_bomb(path: Path, zeros_mib: int = 1024, template: str = "CT_small.dcm") -> Path:
    """A Deflated Explicit VR Little Endian DICOM file holding a private OB element of
    ``zeros_mib`` MiB of zeros (about 1 KB per MiB on disk), before its small image."""
    ds = pydicom.dcmread(get_testdata_file(template))
    block = ds.private_block(0x0009, "MEDSR BOMB", create=True)
    block.add_new(0x00, "OB", b"PLACEHLD")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    start = 132 + 12 + int.from_bytes(data[140:144], "little")  # after the meta group
    inflated = zlib.decompress(data[start:], -zlib.MAX_WBITS)
    k = inflated.index(b"PLACEHLD") - 12  # the element header: tag, VR, 2 reserved, length
    prefix = inflated[: k + 8] + (zeros_mib << 20).to_bytes(4, "little")
    suffix = inflated[k + 20 :]
    # A fully flushed block of zeros stands alone, so copies of it chain into one stream.
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = z.compress(bytes(1 << 20)) + z.flush(zlib.Z_FULL_FLUSH)
    with open(path, "wb") as f:
        f.write(data[:start])
        z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        f.write(z.compress(prefix) + z.flush(zlib.Z_FULL_FLUSH))
        for _ in range(zeros_mib):
            f.write(zeros)
        z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        f.write(z.compress(suffix) + z.flush())
    return path


def nifti_gz_bomb(path: Path, side: int = 400, dtype=np.float64) -> Path:
    """A ``.nii.gz`` of a few dozen bytes whose header declares ``side**3`` voxels."""
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape((side, side, side))
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    return path
