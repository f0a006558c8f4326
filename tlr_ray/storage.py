"""The storage root: a local folder, a shared-filesystem path, or an object-store URI (s3://, gs://, ...).

Everything stored (artifacts, Ray's run folders, MLflow's artifacts, searches, reports) lives under one
root, so one string configures it (`execution.storage` / `--storage`). A plain path is used as a local
folder (atomic renames work there); a URI goes through pyarrow's filesystems, as Ray's `storage_path`
does, so Ray and the artifact store agree on what the string means. Credentials come from the
environment as pyarrow expects (AWS_* / ~/.aws for s3://, GOOGLE_APPLICATION_CREDENTIALS for gs://).

A `file://` URI deliberately takes the object-store code path (no renames, upload then manifest): it
lets a real multi-process run exercise that path without S3. Tests register other filesystems (e.g.
pyarrow's in-memory `_MockFileSystem`) under a made-up scheme in `FILESYSTEMS`.
"""
from __future__ import annotations

import functools
import os
import re
import uuid
from pathlib import Path

import pyarrow.fs as pafs

# Schemes `execution.storage` accepts, and the pyarrow class that must exist in this build to open them
# (checked without connecting: validation runs offline, before Ray starts).
SCHEMES = {"file": "LocalFileSystem", "s3": "S3FileSystem", "gs": "GcsFileSystem", "gcs": "GcsFileSystem",
           "hdfs": "HadoopFileSystem", "abfs": "AzureFileSystem"}
OBJECT_STORES = {"s3", "gcs", "abfs"}   # pyarrow type names: whole-object writes, no directories
# scheme -> filesystem used instead of pyarrow's own for `<scheme>://<path>`; for tests.
FILESYSTEMS: dict[str, pafs.FileSystem] = {}
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme(storage: str | os.PathLike) -> str | None:
    m = _URI.match(str(storage))
    return m.group(1).lower() if m else None


def is_local(storage: str | os.PathLike) -> bool:
    """A plain path (local or shared filesystem), where directories can be renamed atomically."""
    return scheme(storage) is None


def resolve(storage: str | os.PathLike) -> str:
    """The absolute form handed to workers: they may run in another directory, or on another node."""
    if is_local(storage):
        return str(Path(storage).expanduser().resolve())
    return str(storage).rstrip("/")


def join(storage: str | os.PathLike, *parts: str) -> str:
    """A path (local store) or URI (remote store) below the root, e.g. Ray's storage_path."""
    if is_local(storage):
        return str(Path(storage, *parts))
    return "/".join([str(storage).rstrip("/"), *(p.strip("/") for p in parts)])


def check(storage: str) -> str | None:
    """Why `storage` cannot be used here, or None. Offline: only the scheme is checked."""
    s = scheme(storage)
    if s is None or s in FILESYSTEMS:
        return None
    if s not in SCHEMES:
        return (f"{storage!r}: unknown scheme {s}://; give a folder or a URI with one of "
                f"{', '.join(f'{k}://' for k in SCHEMES)}")
    if not hasattr(pafs, SCHEMES[s]):
        return f"{storage!r}: this pyarrow build cannot open {s}:// (no pyarrow.fs.{SCHEMES[s]})"
    return None


def unwritable(storage: str) -> str | None:
    """Why nothing can be written below the root (read-only, full, no permission, a file in the way), or
    None: a probe file written and removed, before any job runs."""
    fs, root = filesystem(storage)
    probe = f"{root}/.write-probe-{uuid.uuid4().hex[:8]}"
    try:
        make_parent(fs, probe)
        with fs.open_output_stream(probe) as f:
            f.write(b"tlr_ray")
        fs.delete_file(probe)
    except OSError as e:
        return (f"{storage!r} cannot be written ({type(e).__name__}: {e}); make it writable (permissions, "
                "free space, a read-only mount) or give another root with --storage")
    return None


def filesystem(storage: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path on it) for the storage root or any path/URI below it."""
    s = scheme(storage)
    if s is None:
        return pafs.LocalFileSystem(), resolve(storage)
    if s in FILESYSTEMS:
        return FILESYSTEMS[s], str(storage)[len(s) + 3:].rstrip("/")
    return _from_uri(str(storage).rstrip("/"))


@functools.lru_cache(maxsize=64)
def _from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    # One client per root and process: S3/GCS clients are costly to create.
    return pafs.FileSystem.from_uri(uri)


def cache_root() -> Path:
    """This machine's cache (as tlr_ray/train/token_cache.py): downloads of remote artifacts go here."""
    return Path(os.environ.get("TLR_RAY_CACHE") or "~/.cache/tlr_ray").expanduser()


# --- byte-level helpers shared by the artifact store, the search cache and the report upload ----------

def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def make_parent(fs: pafs.FileSystem, path: str) -> None:
    # Object stores have no directories (creating them would only add marker objects); others need them.
    if fs.type_name not in OBJECT_STORES:
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """A reader never sees half a file: an object store shows a new object whole; elsewhere (file://, the
    mock, HDFS) write next to `path`, then move into place."""
    make_parent(fs, path)
    if fs.type_name in OBJECT_STORES:
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def upload(fs: pafs.FileSystem, local: Path, path: str) -> None:
    make_parent(fs, path)
    with open(local, "rb") as src, fs.open_output_stream(path) as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)


def remove(storage: str | os.PathLike, *parts: str) -> None:
    """Delete the folder `parts` below the root, if it exists."""
    fs, root = filesystem(storage)
    try:
        fs.delete_dir("/".join([root, *parts]))
    except FileNotFoundError:
        pass


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


class StoreFile:
    """A file in a remote store with the few `Path` methods the search cache uses (is_file, read_text,
    write_text, name, parent.mkdir), so that code reads the same for a folder and for a URI."""

    def __init__(self, storage: str, *parts: str):
        self.storage, self.parts = storage, parts
        self.uri = join(storage, *parts)
        self.fs, root = filesystem(storage)  # one client per root, not per file
        self.path = "/".join([root, *parts])
        self.name = parts[-1] if parts else self.uri.rsplit("/", 1)[-1]

    @property
    def parent(self) -> StoreFile:
        return StoreFile(self.storage, *self.parts[:-1])

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.fs.create_dir(self.path, recursive=parents)

    def is_file(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def read_bytes(self) -> bytes:
        return read_bytes(self.fs, self.path)

    def write_bytes(self, data: bytes) -> int:
        write_bytes(self.fs, self.path, data)
        return len(data)

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"StoreFile({self.uri!r})"
