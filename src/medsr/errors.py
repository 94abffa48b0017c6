"""Typed errors. Every error names the file (when there is one) and the problem.

The CLI prints ``str(error)`` and exits non-zero without a traceback for any
``MedsrError``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class MedsrError(Exception):
    """Base class of every error medsr raises on purpose."""


class ConfigError(MedsrError, ValueError):
    """A configuration value or option is invalid (names the value and the allowed ones)."""


class FileError(MedsrError):
    """A problem with one file or folder; the message starts with its path."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ReadError(FileError):
    """A file could not be read as an image."""


class UnsupportedFormatError(ReadError):
    """The file is not of a format medsr reads (or not of the one its name says)."""


class CorruptFileError(ReadError):
    """The file is truncated or its content contradicts its header."""


class NoPixelDataError(ReadError):
    """A DICOM file holds no image (e.g. a structured report or a presentation state)."""


class MissingCodecError(ReadError):
    """The pixel data is compressed with a transfer syntax for which no decoder is installed."""


class ImageTooLargeError(ReadError):
    """The header declares more pixels or bytes than the configured cap (decompression bombs)."""


class MixedSeriesError(ReadError):
    """A folder holds more than one DICOM series, or slices that do not form one volume."""


class GeometryError(MedsrError):
    """Spacing, orientation or positions are missing, inconsistent or irregular."""


class WriteError(FileError):
    """An image could not be written (format limits, invalid values, failed read-back)."""


class StudyError(MedsrError):
    """A reader-study request is invalid; each subclass maps to one HTTP status in the web app."""


class InvalidAnswerError(StudyError, ValueError):
    """An answer is malformed: a score outside 1-5, an unknown flag, the wrong kind (422)."""


class UnknownItemError(StudyError, LookupError):
    """No such item or image in this study, or not one assigned to this reader (404)."""


class InvalidTokenError(StudyError):
    """The reader token is missing or matches no reader of this study (401)."""


class AlreadyAnsweredError(StudyError):
    """The study forbids changing answers and this item was answered already (409)."""


class CheckpointError(FileError):
    """A model checkpoint is missing, unreadable, or does not match the model it describes."""


class WeightsNotFoundError(MedsrError):
    """Pretrained weights a component needs (e.g. VGG for the perceptual loss) are not available.

    medsr never downloads weights; the message says where it looked and how to provide them.
    """


class TrainingError(MedsrError):
    """Training cannot go on: e.g. too many non-finite (NaN/Inf) steps in a row. The message
    says where the last good training state is."""


class NonFiniteInputError(MedsrError, ValueError):
    """An input image holds NaN or infinite values (the message gives the count); medsr does
    not upscale or train on it, since every model would spread them into the output."""


class InferenceError(MedsrError):
    """Running a model failed: out of memory on a tile, non-finite output, a broken ONNX file.

    Never swallowed: a failed tile is an error, not a black tile in the output.
    """
