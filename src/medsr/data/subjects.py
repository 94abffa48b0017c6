"""Subject ids: which patient a volume belongs to, so splits never leak a patient.

Rules, in order (the first that applies wins):

1. ``--subject-regex REGEX``: searched in the volume's path relative to its source folder
   (POSIX, e.g. ``pat0003/Flair_subtrMeanDivStd.nii.gz``); the id is the named group
   ``subject``, else group 1, else the whole match. A path it does not match is an error.
2. Identifiers read from the file content are stored as salted hashes, never in clear:
   DICOM ``PatientID`` and MAT ``cjdata.PID`` give ``id-<16 hex digits>``, the first 64 bits
   of ``sha256(salt + ":" + identifier)``.
3. Names from the file system are kept as they are: a volume inside a subfolder of its
   source belongs to the subject named by the first subfolder (BraTS ``pat0003/``, BIDS
   ``sub-01/anat/``), a file directly in the source folder to its file stem (spine
   ``VB1_02.npz`` -> ``VB1_02``), and a DICOM series folder without PatientID to its folder.

Splitting orders subjects by a seeded hash of the identifier itself (kept in memory only),
so the split does not depend on the salt; the salt only changes the stored ids. Give the
same ``--salt`` (or ``MEDSR_SUBJECT_SALT``) to get the same ids in two runs.

The same id in two datasets is taken as the same subject (it then lands in one split).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from medsr.data.scan import VolumeEntry, stem
from medsr.errors import ConfigError
from medsr.io.image import Image


@dataclass(frozen=True)
class Subject:
    """``key`` identifies the subject for splitting (may be a raw identifier: never stored);
    ``id`` is what the manifest stores; ``rule`` names the rule that gave it."""

    key: str
    id: str
    rule: str


def new_salt() -> str:
    return secrets.token_hex(16)


def hashed_id(identifier: str, salt: str) -> str:
    return "id-" + hashlib.sha256(f"{salt}:{identifier}".encode()).hexdigest()[:16]


def compile_subject_regex(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"invalid --subject-regex {pattern!r}: {error}") from error


def subject_from_path(regex: re.Pattern[str], relative: str) -> str:
    """The id ``regex`` gives for a relative path (rule 1); ConfigError when it does not match."""
    match = regex.search(relative)
    if match is None:
        raise ConfigError(
            f"--subject-regex {regex.pattern!r} does not match {relative!r}; every volume "
            "needs a subject id"
        )
    if "subject" in regex.groupindex:
        value = match.group("subject")
    elif regex.groups:
        value = match.group(1)
    else:
        value = match.group(0)
    if not value:
        raise ConfigError(f"--subject-regex {regex.pattern!r} gives an empty id for {relative!r}")
    return value


def _content_identifier(image: Image) -> str | None:
    source = image.source
    if source is not None and source.format == "dicom" and source.datasets:
        value = str(source.datasets[0].get("PatientID", "") or "").strip()
        return value or None
    value = str(image.metadata.get("subject_id", "") or "").strip()
    return value or None


def subject_of(
    entry: VolumeEntry, image: Image, *, salt: str, regex: re.Pattern[str] | None = None
) -> Subject:
    """The subject of one volume by the rules of the module docstring."""
    if regex is not None:
        value = subject_from_path(regex, entry.relative)
        return Subject(key=f"path:{value}", id=value, rule="regex")
    identifier = _content_identifier(image)
    if identifier is not None:
        rule = "dicom PatientID" if entry.format == "dicom" else "MAT PID"
        return Subject(key=f"content:{identifier}", id=hashed_id(identifier, salt), rule=rule)
    parts = entry.relative.split("/")
    if entry.relative == ".":
        value = entry.path.name
    elif len(parts) > 1 or entry.format == "dicom":
        value = parts[0]
    else:
        value = stem(entry.path)
    return Subject(key=f"path:{value}", id=value, rule="path")


__all__ = [
    "Subject",
    "compile_subject_regex",
    "hashed_id",
    "new_salt",
    "subject_from_path",
    "subject_of",
]
