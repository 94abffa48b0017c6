"""Readers and writers for the plain formats: PNG/JPEG (Pillow), TIFF (tifffile), NPY/NPZ, MAT.

Bit depth always comes from the file's own header (PNG IHDR, TIFF BitsPerSample, the array
dtype), never from the pixel values. Sizes are checked against the pixel cap before decoding.
"""

from __future__ import annotations

import logging
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np

from medsr.errors import (
    CorruptFileError,
    ImageTooLargeError,
    ReadError,
    UnsupportedFormatError,
    WriteError,
)
from medsr.io.image import Image, Source

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_pixels(path: Path, shape: tuple[int, ...], max_pixels: int) -> None:
    count = int(np.prod([int(n) for n in shape], dtype=np.int64))
    if count > max_pixels:
        raise ImageTooLargeError(
            path,
            f"declares {'x'.join(str(n) for n in shape)} = {count} pixels, over the cap of "
            f"{max_pixels} (a decompression bomb or a huge image; raise max_pixels if trusted)",
        )


# -- PNG / JPEG -------------------------------------------------------------------------------
def png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the PNG IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise CorruptFileError(path, "PNG header (IHDR) is missing or truncated")
    width, height, depth, color_type = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, color_type


def read_pillow(path: Path, *, kind: str, max_pixels: int) -> Image:
    """PNG or JPEG through Pillow; grey stays grey, colour becomes RGB."""
    from PIL import Image as PILImage

    file_bits = None
    if kind == "png":
        width, height, file_bits, _ = png_header(path)
        _check_pixels(path, (height, width), max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as im:
                _check_pixels(path, (im.height, im.width), max_pixels)
                im.load()
                mode = im.mode
                if mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif mode == "CMYK" or mode == "YCbCr":
                    im = im.convert("RGB")
                elif mode == "1":
                    im = im.convert("L")
                mode = im.mode
                if mode in ("LA", "RGBA", "PA"):
                    alpha = np.asarray(im.getchannel("A"))
                    if alpha.min() < 255:
                        log.warning("%s: transparency ignored (alpha channel dropped)", path.name)
                    im = im.convert("L" if mode == "LA" else "RGB")
                array = np.asarray(im)
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as error:
        raise ImageTooLargeError(path, f"decompression bomb refused ({error})") from error
    except ImageTooLargeError:
        raise
    except (OSError, SyntaxError, ValueError, struct.error) as error:
        raise CorruptFileError(path, f"image data is truncated or malformed ({error})") from error
    if array.dtype == np.int32:  # 16-bit grey PNG opened in mode "I"
        array = array.astype(np.uint16)
    color = array.ndim == 3
    bits = 16 if (kind == "png" and file_bits in (16,)) or array.dtype == np.uint16 else 8
    if color and array.shape[-1] != 3:
        raise UnsupportedFormatError(path, f"unsupported channel layout {array.shape}")
    return Image(
        array=array,
        spacing=(1.0, 1.0),
        color=color,
        source=Source(
            format=kind,
            path=path,
            stored_dtype="uint16" if bits == 16 else "uint8",
            bits_stored=bits,
        ),
        metadata={"file_bit_depth": file_bits or bits},
    )


# -- TIFF -------------------------------------------------------------------------------------
def read_tiff(path: Path, *, max_pixels: int) -> Image:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            _check_pixels(path, shape, max_pixels)
            page = tif.pages[0]
            photometric = getattr(page.photometric, "name", str(page.photometric))
            bits = int(page.bitspersample)
            array = series.asarray()
    except ImageTooLargeError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as error:
        raise CorruptFileError(path, f"not a readable TIFF file ({error})") from error
    color = photometric in ("RGB", "YCBCR") and array.shape[-1] in (3, 4)
    if color and array.shape[-1] == 4:
        array = array[..., :3]
    array = np.squeeze(array) if array.ndim > (3 if color else 2) else array
    spatial = array.ndim - color
    if spatial not in (2, 3):
        raise UnsupportedFormatError(path, f"TIFF of shape {shape} is not a 2D or 3D image")
    integer = np.issubdtype(dtype, np.integer)
    if photometric == "MINISWHITE" and integer:
        array = (np.iinfo(dtype).max if bits >= dtype.itemsize * 8 else (1 << bits) - 1) - array
    return Image(
        array=array,
        spacing=(1.0,) * spatial,
        color=color,
        source=Source(
            format="tiff",
            path=path,
            stored_dtype=str(dtype),
            bits_stored=bits if integer else None,
            signed=bool(integer and np.issubdtype(dtype, np.signedinteger)),
            inverted=photometric == "MINISWHITE",
        ),
    )


# -- NPY / NPZ --------------------------------------------------------------------------------
def _numeric(path: Path, array: np.ndarray, what: str) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UnsupportedFormatError(path, f"{what} has non-numeric dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise UnsupportedFormatError(path, f"{what} is complex; store magnitudes")
    return array


def _array_image(path: Path, array: np.ndarray, fmt: str, **extra) -> Image:
    array = np.squeeze(array) if array.ndim > 3 else array
    if array.ndim not in (2, 3):
        raise UnsupportedFormatError(path, f"array of shape {array.shape} is not a 2D or 3D image")
    integer = np.issubdtype(array.dtype, np.integer)
    spacing = extra.pop("spacing", None)
    if spacing is None:
        spacing = (1.0,) * array.ndim
    return Image(
        array=array,
        spacing=tuple(float(s) for s in spacing),
        source=Source(
            format=fmt,
            path=path,
            stored_dtype=str(array.dtype),
            bits_stored=int(array.dtype.itemsize * 8) if integer else None,
            signed=bool(integer and np.issubdtype(array.dtype, np.signedinteger)),
        ),
        **extra,
    )


def read_npy(path: Path, *, max_pixels: int) -> Image:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise UnsupportedFormatError(path, f"not a plain numeric .npy array ({error})") from error
    except (OSError, EOFError) as error:
        raise CorruptFileError(path, f"truncated or malformed .npy ({error})") from error
    _check_pixels(path, array.shape, max_pixels)
    return _array_image(path, _numeric(path, np.array(array), "array"), "npy")


def read_npz(path: Path, *, max_pixels: int, key: str | None = None) -> Image:
    """An ``.npz`` array: ``key``, else ``image``, else the only one; optional mask, spacing."""
    try:
        with zipfile.ZipFile(path) as zf:
            sizes = {i.filename.removesuffix(".npy"): i.file_size for i in zf.infolist()}
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise CorruptFileError(path, f"truncated or malformed .npz ({error})") from error
    with archive:
        names = list(archive.files)
        if key is None:
            others = [n for n in names if n not in ("mask", "spacing")]
            if "image" in names:
                key = "image"
            elif len(others) == 1:
                key = others[0]
            else:
                raise ReadError(
                    path, f"cannot tell which array is the image among {names}; name it (key=...)"
                )
        if key not in names:
            raise ReadError(path, f"no array {key!r} in the file; it holds {names}")
        if sizes.get(key, 0) > max_pixels * 8:
            raise ImageTooLargeError(path, f"array {key!r} holds {sizes[key]} bytes, over the cap")
        try:
            array = _numeric(path, archive[key], f"array {key!r}")
            mask = archive["mask"] if "mask" in names and key != "mask" else None
            spacing = archive["spacing"].tolist() if "spacing" in names else None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise CorruptFileError(path, f"array data is malformed ({error})") from error
    _check_pixels(path, array.shape, max_pixels)
    extra = {"spacing": spacing}
    if mask is not None and mask.shape == array.shape:
        extra["mask"] = mask
    return _array_image(path, array, "npz", **extra)


# -- MATLAB -------------------------------------------------------------------------------------
MAT_V5 = b"MATLAB 5.0 MAT-file"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _matlab_to_zyx(array: np.ndarray) -> np.ndarray:
    """MATLAB stores volumes as (rows, cols, slices); medsr wants (slices, rows, cols)."""
    return np.moveaxis(array, -1, 0) if array.ndim == 3 else array


def read_mat(path: Path, *, max_pixels: int, key: str | None = None) -> Image:
    """MATLAB v5 (scipy) or v7.3 (HDF5) files, including the figshare brain-tumour ``cjdata``."""
    with open(path, "rb") as f:
        head = f.read(520)
    if head[512:520] == HDF5_SIGNATURE or head[:8] == HDF5_SIGNATURE:
        variables = _mat73_variables(path, max_pixels)
    else:
        variables = _mat5_variables(path, max_pixels)
    metadata: dict = {}
    mask = None
    if "cjdata" in variables and isinstance(variables["cjdata"], dict) and key is None:
        cj = variables["cjdata"]
        if "image" not in cj:
            raise ReadError(path, f"cjdata has no 'image' field; fields: {sorted(cj)}")
        array = np.asarray(cj["image"])
        if "tumorMask" in cj:
            mask = np.asarray(cj["tumorMask"]).astype(bool)
        if "label" in cj:
            metadata["label"] = int(np.asarray(cj["label"]).ravel()[0])
        if "PID" in cj:
            metadata["subject_id"] = _mat_string(cj["PID"])
    else:
        arrays = {
            k: v
            for k, v in variables.items()
            if isinstance(v, np.ndarray)
            and v.ndim in (2, 3)
            and min(v.shape) > 1
            and (np.issubdtype(v.dtype, np.number) or v.dtype == bool)
        }
        if key is not None:
            if key not in variables:
                raise ReadError(path, f"no variable {key!r}; the file holds {sorted(variables)}")
            array = np.asarray(variables[key])
        elif len([k for k in arrays if "mask" not in k.lower()]) == 1:
            key = next(k for k in arrays if "mask" not in k.lower())
            array = arrays[key]
        else:
            names = sorted(arrays) or sorted(variables)
            raise ReadError(
                path, f"cannot tell which variable is the image among {names}; name it (key=...)"
            )
        masks = [k for k in arrays if "mask" in k.lower() and arrays[k].shape == array.shape]
        if len(masks) == 1:
            mask = arrays[masks[0]].astype(bool)
    array = _matlab_to_zyx(_numeric(path, np.asarray(array), "image"))
    if mask is not None:
        mask = _matlab_to_zyx(mask)
        if mask.shape != array.shape:
            log.warning(
                "%s: mask shape %s differs from image %s; ignored",
                path.name,
                mask.shape,
                array.shape,
            )
            mask = None
    image = _array_image(path, array, "mat", mask=mask, metadata=metadata)
    return image


def _mat_string(value) -> str:
    array = np.asarray(value)
    if array.dtype.kind in "US":
        return str(array.ravel()[0]) if array.size else ""
    return "".join(chr(int(c)) for c in array.ravel() if int(c) > 0)


def _mat5_variables(path: Path, max_pixels: int) -> dict:
    import scipy.io

    try:
        info = scipy.io.whosmat(str(path))
        for _name, shape, _ in info:
            _check_pixels(path, shape, max_pixels)
        raw = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except ImageTooLargeError:
        raise
    except (ValueError, TypeError, OSError, EOFError, NotImplementedError) as error:
        raise CorruptFileError(path, f"not a readable MATLAB file ({error})") from error
    out: dict = {}
    for name, value in raw.items():
        if name.startswith("__"):
            continue
        if hasattr(value, "_fieldnames"):
            out[name] = {f: getattr(value, f) for f in value._fieldnames}
        else:
            out[name] = value
    return out


def _mat73_variables(path: Path, max_pixels: int) -> dict:
    import h5py

    def load(node):
        if isinstance(node, h5py.Dataset):
            if node.dtype.kind not in "iufb":
                return None
            _check_pixels(path, node.shape, max_pixels)
            return np.asarray(node[()]).T  # HDF5 holds the MATLAB array transposed
        return {k: load(v) for k, v in node.items() if not k.startswith("#")}

    try:
        with h5py.File(path, "r") as f:
            return {k: load(v) for k, v in f.items() if not k.startswith("#")}
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, KeyError) as error:
        raise CorruptFileError(path, f"not a readable MATLAB v7.3 file ({error})") from error


# -- writers --------------------------------------------------------------------------------
def integer_values(image: Image, path: Path, *, bits: int) -> np.ndarray:
    """Values for an integer file of ``bits`` (8 or 16): the source's stored values when it has
    them, the values themselves when they already fit, else a linear map of min..max (warned)."""
    array = image.array
    src = image.source
    top = (1 << bits) - 1
    if src is not None and src.format == "dicom" and src.datasets and not image.color:
        from medsr.io.dicom_write import stored_values

        stored = stored_values(image, src.datasets[0])
        if stored.min() >= 0 and stored.max() <= top:
            return stored.astype(np.uint16 if bits == 16 else np.uint8)
    rounded = np.rint(array)
    if np.allclose(array, rounded, atol=1e-3) and array.min() >= -0.5 and array.max() <= top + 0.5:
        return np.clip(rounded, 0, top).astype(np.uint16 if bits == 16 else np.uint8)
    lo, hi = float(array.min()), float(array.max())
    log.warning(
        "%s: values %.4g..%.4g do not fit %d-bit integers; mapped linearly to 0..%d "
        "(use NIfTI, NPY or TIFF with float for physical units)",
        path.name,
        lo,
        hi,
        bits,
        top,
    )
    scaled = (array - lo) / max(hi - lo, 1e-12) * top
    return np.clip(np.rint(scaled), 0, top).astype(np.uint16 if bits == 16 else np.uint8)


def write_png(image: Image, path: Path) -> None:
    from PIL import Image as PILImage

    if image.is_volume:
        raise WriteError(path, f"a volume {image.spatial_shape} cannot be one PNG; write a folder")
    src = image.source
    bits = 8 if src is not None and src.bits_stored is not None and src.bits_stored <= 8 else 16
    if image.color:
        bits = 8
    values = integer_values(image, path, bits=bits)
    if image.color:
        PILImage.fromarray(values, mode="RGB").save(path, format="PNG")
    elif bits == 8:
        PILImage.fromarray(values, mode="L").save(path, format="PNG")
    else:
        PILImage.fromarray(values.astype(np.uint16)).save(path, format="PNG")


def write_tiff(image: Image, path: Path) -> None:
    import tifffile

    src = image.source
    if (
        src is not None
        and src.bits_stored is None
        and src.format in ("tiff", "nifti", "npy", "npz")
    ):
        values = image.array  # float data stays float
    else:
        bits = 8 if (src and src.bits_stored and src.bits_stored <= 8) or image.color else 16
        values = integer_values(image, path, bits=bits)
    tifffile.imwrite(path, values, photometric="rgb" if image.color else "minisblack")


def write_npy(image: Image, path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, image.array, allow_pickle=False)


def write_npz(image: Image, path: Path) -> None:
    arrays = {"image": image.array, "spacing": np.asarray(image.spacing)}
    if image.mask is not None:
        arrays["mask"] = image.mask
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
