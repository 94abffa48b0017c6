"""A size check for DICOM files in Deflated Explicit VR Little Endian, before pydicom parses them.

pydicom inflates the whole dataset of such a file into memory and then copies every element
out of it, so a 1 MB file holding a 1 GiB run of zeros in a private element costs several GB.
:func:`check_deflated` inflates the dataset in 1 MiB chunks, keeps none of it, and walks its
element headers (into sequences and encapsulated pixel data), refusing the file as soon as

* the elements other than pixel data pass :data:`MAX_HEADER_BYTES`, or
* Rows x Columns x frames pass ``max_pixels``, or
* the pixel data is longer than its declared size needs (twice the native size plus 1 MiB,
  which any lossless or lossy encoding of that many pixels fits in).

So the check runs in constant memory, and a file that passes inflates to at most
``MAX_HEADER_BYTES`` plus what its image needs.
"""

from __future__ import annotations

import contextlib
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from medsr.errors import CorruptFileError, ImageTooLargeError

__all__ = ["DEFLATED", "MAX_HEADER_BYTES", "check_deflated", "is_deflated"]

DEFLATED = "1.2.840.10008.1.2.1.99"
MAX_HEADER_BYTES = 64 * 2**20
"""Cap on the inflated bytes of everything but the pixel data (a real header, even an enhanced
multi-frame one with thousands of functional groups, is far below it)."""

_CHUNK = 1 << 20
_UNDEFINED = 0xFFFFFFFF
_MAX_DEPTH = 32
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
# Pixel data, float and double float pixel data -> bytes per sample (0: from BitsAllocated).
_PIXEL_TAGS = {0x7FE00010: 0, 0x7FE00008: 4, 0x7FE00009: 8}
_SIZE_TAGS = {
    0x00280010: "rows",
    0x00280011: "columns",
    0x00280008: "frames",
    0x00280002: "samples",
    0x00280100: "bits",
}


class _Malformed(Exception):
    """The element structure is not what the walker expects; pydicom will say what is wrong."""


def _meta_transfer_syntax(f: BinaryIO) -> tuple[str | None, int]:
    """(TransferSyntaxUID of the file meta group or None, offset where the dataset starts)."""
    head = f.read(132)
    start = 132 if len(head) == 132 and head[128:132] == b"DICM" else 0
    f.seek(start)
    syntax = None
    while True:
        header = f.read(8)
        if len(header) < 8 or struct.unpack("<H", header[:2])[0] != 0x0002:
            return syntax, f.tell() - len(header)
        elem = struct.unpack("<H", header[2:4])[0]
        vr = header[4:6]
        if vr in _LONG_VRS:
            extra = f.read(4)
            if len(extra) < 4:
                return None, start
            length = struct.unpack("<I", extra)[0]
        elif vr.isalpha() and vr.isupper():
            length = struct.unpack("<H", header[6:8])[0]
        else:  # implicit VR in the meta group: not a file pydicom reads as deflated either
            return None, start
        if length == _UNDEFINED or length > 1 << 16:
            return None, start
        value = f.read(length)
        if elem == 0x0010:
            syntax = value.rstrip(b"\0 ").decode("ascii", "replace")


def is_deflated(path: Path) -> bool:
    """Whether the file's meta group declares Deflated Explicit VR Little Endian."""
    with open(path, "rb") as f:
        return _meta_transfer_syntax(f)[0] == DEFLATED


class _Inflated:
    """The inflated dataset as a forward-only stream that counts bytes and keeps at most
    one chunk."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buf = b""
        self._done = False
        self.position = 0

    def _more(self) -> None:
        while not self._buf and not self._done:
            data = self._z.unconsumed_tail or self._f.read(_CHUNK)
            if not data:
                self._buf, self._done = self._z.flush(), True
                return
            try:
                self._buf = self._z.decompress(data, _CHUNK)
            except zlib.error:  # damaged stream: pydicom reports it
                self._done = True
                raise _Malformed from None
            self._done = self._z.eof

    def read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            if not self._buf:
                self._more()
                if not self._buf:
                    break
            take = self._buf[: n - len(out)]
            self._buf = self._buf[len(take) :]
            out += take
        self.position += len(out)
        return out

    def skip(self, n: int, check) -> int:
        """Drop up to ``n`` bytes, calling ``check()`` after each chunk; returns the count."""
        dropped = 0
        while dropped < n:
            if not self._buf:
                self._more()
                if not self._buf:
                    break
            k = min(n - dropped, len(self._buf))
            self._buf = self._buf[k:]
            dropped += k
            self.position += k
            check()
        return dropped


class _Walk:
    def __init__(self, path: Path, stream: _Inflated, max_pixels: int) -> None:
        self.path = path
        self.stream = stream
        self.max_pixels = max_pixels
        self.pixel_bytes = 0
        self.size: dict[str, int] = {}

    def check_header(self) -> None:
        header = self.stream.position - self.pixel_bytes
        if header > MAX_HEADER_BYTES:
            raise ImageTooLargeError(
                self.path,
                f"its deflated dataset inflates to more than {MAX_HEADER_BYTES // 2**20} MiB "
                "outside the pixel data (a decompression bomb?); refused before parsing",
            )

    def pixel_limit(self, bytes_per_sample: int) -> int:
        rows, cols = self.size.get("rows", 0), self.size.get("columns", 0)
        frames = max(self.size.get("frames", 1), 1)
        pixels = rows * cols * frames
        if pixels > self.max_pixels:
            raise ImageTooLargeError(
                self.path,
                f"{frames} x {rows} x {cols} = {pixels} pixels exceeds the cap of "
                f"{self.max_pixels} (raise max_pixels if the file is trusted)",
            )
        if not bytes_per_sample:
            bytes_per_sample = max(1, math.ceil(self.size.get("bits", 16) / 8))
        native = pixels * max(self.size.get("samples", 1), 1) * bytes_per_sample
        return 2 * native + _CHUNK

    def refuse_pixels(self, length: int, limit: int) -> None:
        raise ImageTooLargeError(
            self.path,
            f"its pixel data inflates to {length} bytes, more than the "
            f"{self.size.get('rows', 0)} x {self.size.get('columns', 0)} image it declares "
            f"needs ({limit} at most); refused before parsing",
        )

    def header(self) -> tuple[int, int, bytes, int] | None:
        head = self.stream.read(8)
        if len(head) < 8:
            if head:
                raise _Malformed
            return None
        group, elem = struct.unpack("<HH", head[:4])
        if group == 0xFFFE:
            return group, elem, b"", struct.unpack("<I", head[4:])[0]
        vr = head[4:6]
        if vr in _LONG_VRS:
            extra = self.stream.read(4)
            if len(extra) < 4:
                raise _Malformed
            return group, elem, vr, struct.unpack("<I", extra)[0]
        return group, elem, vr, struct.unpack("<H", head[6:8])[0]

    def dataset(self, depth: int) -> None:
        """Elements up to the end of the stream (depth 0) or an item delimiter."""
        if depth > _MAX_DEPTH:
            raise CorruptFileError(self.path, f"sequences are nested over {_MAX_DEPTH} deep")
        while (element := self.header()) is not None:
            group, elem, vr, length = element
            if group == 0xFFFE:
                if elem == 0xE00D and depth > 0:
                    return
                raise _Malformed
            tag = group << 16 | elem
            pixel = depth == 0 and tag in _PIXEL_TAGS
            if pixel:
                limit = self.pixel_limit(_PIXEL_TAGS[tag])
                if length != _UNDEFINED and length > limit:
                    self.refuse_pixels(length, limit)
            if length == _UNDEFINED:
                self.items(depth + 1, limit if pixel else None)
            elif depth == 0 and tag in _SIZE_TAGS and length <= 16:
                value = self.stream.read(length)
                if vr == b"US" and length >= 2:
                    self.size[_SIZE_TAGS[tag]] = struct.unpack("<H", value[:2])[0]
                elif value.strip(b" \0").isdigit():  # IS (NumberOfFrames)
                    self.size[_SIZE_TAGS[tag]] = int(value.strip(b" \0"))
            elif pixel:
                self.pixel_bytes += self.stream.skip(length, self.check_header)
            else:
                self.stream.skip(length, self.check_header)
            self.check_header()

    def items(self, depth: int, pixel_limit: int | None) -> None:
        """Items up to a sequence delimiter (sequences, encapsulated pixel data)."""
        start = self.pixel_bytes
        while (element := self.header()) is not None:
            group, elem, _, length = element
            if group != 0xFFFE:
                raise _Malformed
            if elem == 0xE0DD:
                return
            if elem != 0xE000:
                raise _Malformed
            if length == _UNDEFINED:
                if pixel_limit is not None:
                    raise _Malformed
                self.dataset(depth)
                continue
            if pixel_limit is None:
                self.stream.skip(length, self.check_header)
                continue
            if self.pixel_bytes - start + length > pixel_limit:
                self.refuse_pixels(self.pixel_bytes - start + length, pixel_limit)
            self.pixel_bytes += self.stream.skip(length, self.check_header)
        raise _Malformed


def check_deflated(path: Path | BinaryIO, *, max_pixels: int, label: str | None = None) -> None:
    """Refuse (``ImageTooLargeError``) a Deflated Explicit VR Little Endian file whose dataset
    inflates beyond what its image needs; other files are left alone. Constant memory.

    ``path`` may be an open binary file (read from its start and left there); ``label``
    names it in errors (default: the path)."""
    if isinstance(path, str | Path):
        with open(path, "rb") as f:
            check_deflated(f, max_pixels=max_pixels, label=label or str(path))
        return
    f = path
    f.seek(0)
    try:
        syntax, start = _meta_transfer_syntax(f)
        if syntax != DEFLATED:
            return
        f.seek(start)
        stream = _Inflated(f)
        walk = _Walk(Path(label or "the file"), stream, max_pixels)
        try:
            walk.dataset(0)
        except _Malformed:
            # Unexpected structure (pydicom will report it): still bound what follows, all of
            # it counted as header bytes.
            with contextlib.suppress(_Malformed):
                stream.skip(_UNDEFINED << 8, walk.check_header)
    finally:
        f.seek(0)
