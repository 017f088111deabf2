"""Checks every uploaded file before anything reads it.

- size: at most ``max_upload_bytes`` (413 otherwise; the app also caps the whole request body);
- name: only used for messages, reduced to a plain base name; separators, ``..``, control
  characters or a NUL byte are refused (nothing is ever written under a client's file name);
- type: sniffed from the bytes, never trusted from the name or the Content-Type header. A file
  named ``.dcm`` must start like DICOM (``DICM`` at byte 128) and its data elements must fit
  inside the file (a truncated DICOM is refused); pickles (and ``.npy``/``.npz``, which may carry
  them) are refused outright: nothing from a request is ever unpickled.

Example:
    >>> up = check_upload(data, filename="visit.csv", expected={FileKind.CSV}, max_bytes=10_000_000)
    >>> up.kind, up.sha256
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from enum import StrEnum

from fastapi import HTTPException, UploadFile


class FileKind(StrEnum):
    CSV = "CSV text"
    DICOM = "DICOM"
    PNG = "PNG image"
    JPEG = "JPEG image"
    NIFTI = "NIfTI image"
    GZIP = "gzip archive"
    ZIP = "ZIP archive (or NumPy .npz)"
    NPY = "NumPy .npy array"
    PICKLE = "Python pickle"
    PDF = "PDF document"
    BINARY = "binary data"
    EMPTY = "empty file"


_EXTENSIONS = {
    ".csv": FileKind.CSV, ".tsv": FileKind.CSV, ".txt": FileKind.CSV, ".dcm": FileKind.DICOM, ".dicom": FileKind.DICOM,
    ".png": FileKind.PNG, ".jpg": FileKind.JPEG, ".jpeg": FileKind.JPEG, ".nii": FileKind.NIFTI,
}
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class CheckedUpload:
    filename: str
    kind: FileKind
    data: bytes
    sha256: str


def safe_filename(name: str | None) -> str:
    """The client's file name for messages; path parts or control characters are refused."""
    name = (name or "upload").strip()
    if not name or _BAD_NAME.search(name) or name in {".", ".."} or name.startswith("..") or len(name) > 255:
        raise HTTPException(400, f"Upload refused: the file name {name[:80]!r} is not a plain file name "
                                 "(no folders, '..', or control characters).")
    return name


def sniff(data: bytes) -> FileKind:
    """What the bytes are, whatever the file is called."""
    if not data:
        return FileKind.EMPTY
    if len(data) >= 132 and data[128:132] == b"DICM":
        return FileKind.DICOM
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return FileKind.PNG
    if data.startswith(b"\xff\xd8\xff"):
        return FileKind.JPEG
    if data.startswith(b"\x1f\x8b"):
        return FileKind.GZIP
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return FileKind.ZIP
    if data.startswith(b"\x93NUMPY"):
        return FileKind.NPY
    if data.startswith(b"%PDF"):
        return FileKind.PDF
    if data[:1] == b"\x80" and len(data) > 1 and data[1] <= 5:  # pickle protocol 2-5 opcode
        return FileKind.PICKLE
    if len(data) >= 348 and data[344:348] in (b"n+1\x00", b"ni1\x00"):
        return FileKind.NIFTI
    if b"\x00" in data[:8192]:
        return FileKind.BINARY
    try:
        data[:65536].decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < 65532:  # not a multi-byte character cut at the sample's end
            return FileKind.BINARY
    return FileKind.CSV


_LONG_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")


def _syntax(uid: str | None, data: bytes, pos: int) -> tuple[bool, str] | None:
    """(explicit VR, struct byte order) of the data set, or None when it cannot be walked (deflated)."""
    if uid is None:  # no transfer syntax in the meta group: look at the first element
        return bool(re.fullmatch(rb"[A-Z]{2}", data[pos + 4:pos + 6])), "<"
    if uid == "1.2.840.10008.1.2":
        return False, "<"
    if uid == "1.2.840.10008.1.2.2":
        return True, ">"
    if uid == "1.2.840.10008.1.2.1.99":  # deflated explicit VR: the data set is compressed
        return None
    return True, "<"


def _dicom_problem(data: bytes) -> str | None:
    """Walk the DICOM data elements; say what is wrong, or None when every element fits the file."""
    pos, n = 132, len(data)
    in_meta, explicit, order, uid = True, True, "<", None
    while pos < n:
        if pos + 8 > n:
            return f"it ends inside a data element header at byte {pos}"
        if in_meta and struct.unpack_from("<H", data, pos)[0] != 0x0002:
            in_meta = False
            syntax = _syntax(uid, data, pos)
            if syntax is None:
                return None
            explicit, order = syntax
            if explicit and not re.fullmatch(rb"[A-Z]{2}", data[pos + 4:pos + 6]):
                explicit = False  # says explicit, is implicit: read it as pydicom does
        group, element = struct.unpack_from(order + "HH", data, pos)
        if group == 0xFFFE:  # item / delimiters inside sequences: 4-byte tag + 4-byte length
            length = struct.unpack_from(order + "I", data, pos + 4)[0]
            pos += 8 + (0 if length == 0xFFFFFFFF or element != 0xE000 else length)
            continue
        if explicit or in_meta:
            o = "<" if in_meta else order
            vr = data[pos + 4:pos + 6]
            if not re.fullmatch(rb"[A-Z]{2}", vr):
                return f"byte {pos} does not hold a data element (value representation {vr!r})"
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    return f"it ends inside a data element header at byte {pos}"
                length, head = struct.unpack_from(o + "I", data, pos + 8)[0], 12
            else:
                length, head = struct.unpack_from(o + "H", data, pos + 6)[0], 8
        else:
            length, head = struct.unpack_from(order + "I", data, pos + 4)[0], 8
        if length == 0xFFFFFFFF:  # undefined length (sequence or encapsulated pixels): stop walking
            return None
        if pos + head + length > n:
            return (f"data element ({group:04X},{element:04X}) at byte {pos} declares {length} bytes but only "
                    f"{n - pos - head} remain (the file is truncated)")
        if in_meta and (group, element) == (0x0002, 0x0010):
            uid = data[pos + head:pos + head + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos += head + length
    return None


def check_upload(data: bytes, *, filename: str | None, expected: set[FileKind], max_bytes: int) -> CheckedUpload:
    """Refuse what is too large, badly named, not of an expected kind, or truncated DICOM."""
    name = safe_filename(filename)
    if len(data) > max_bytes:
        raise HTTPException(413, f"Upload '{name}' is larger than the limit of {max_bytes:,} bytes.")
    kind = sniff(data)
    if kind is FileKind.EMPTY:
        raise HTTPException(422, f"Upload '{name}' is empty.")
    if kind in (FileKind.PICKLE, FileKind.NPY):
        raise HTTPException(415, f"Upload '{name}' is a {kind.value}; medassist never loads pickled data from a request.")
    claimed = next((k for ext, k in _EXTENSIONS.items() if name.lower().endswith(ext)), None)
    if claimed is not None and claimed is not kind:
        why = " (no 'DICM' marker at byte 128)" if claimed is FileKind.DICOM else ""
        raise HTTPException(415, f"Upload '{name}' is named like {claimed.value} but is not{why}; its content looks like {kind.value}.")
    if kind not in expected:
        want = " or ".join(sorted(k.value for k in expected))
        raise HTTPException(415, f"Upload '{name}' is {kind.value}; this route accepts {want}.")
    if kind is FileKind.DICOM:
        problem = _dicom_problem(data)
        if problem:
            raise HTTPException(422, f"Upload '{name}' is not a readable DICOM file: {problem}.")
    return CheckedUpload(filename=name, kind=kind, data=data, sha256=hashlib.sha256(data).hexdigest())


async def read_upload(file: UploadFile, *, expected: set[FileKind], max_bytes: int) -> CheckedUpload:
    """Read at most ``max_bytes + 1`` bytes of an upload and check them."""
    data = await file.read(max_bytes + 1)
    return check_upload(data, filename=file.filename, expected=expected, max_bytes=max_bytes)
