"""A destination type of the tests' own, as a new type would be added: this module and one registration line
(`register(KIND)`). Files go into a folder of a directory on this machine; blocks are files of their own
until the commit joins them and renames the result into place, at once.

Nothing else in the code base knows it: the API's checks, the console's fields, the CLI's choices, the demo's
target and the tests' kit all come from `KIND`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exporter.destinations.common import DestinationKind, Form, check_token, mask_middle
from exporter.errors import DestinationError, InputError
from exporter.export.destination import DestinationInfo, UploadLost, UploadState, Verification
from exporter.export.naming import join_prefix
from exporter.local.kinds import LocalKind, Servers, Target

NAME = "folder"
FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{2,62}")
COMMITS: list[Path] = []  # every file committed, in order, by any instance (a file committed twice shows twice)


class FolderDestination:
    def __init__(self, root: str, folder: str, prefix: str):
        self.root, self.folder, self.prefix = Path(root), folder, prefix

    def _file(self, path: str) -> Path:
        return self.root / self.folder / path

    def _block(self, path: str, index: int) -> Path:
        return self.root / self.folder / ".blocks" / path / f"{index:08d}"

    def describe(self) -> DestinationInfo:
        return DestinationInfo(self.folder, mask_middle(str(self.root)))

    def verify(self, test_file_name: str) -> Verification:
        if not (self.root / self.folder).is_dir():
            raise DestinationError(f"the folder {self.folder!r} does not exist", field="destination.folder")
        test_file = self._file(join_prefix(self.prefix, test_file_name))
        test_file.parent.mkdir(parents=True, exist_ok=True)
        test_file.write_bytes(b"test")
        test_file.unlink()
        return Verification(join_prefix(self.prefix, test_file_name), deleted=True)

    def stage_block(self, path: str, index: int, data: bytes) -> UploadState:
        block = self._block(path, index)
        block.parent.mkdir(parents=True, exist_ok=True)
        block.write_bytes(bytes(data))
        return UploadState()

    def resume_upload(self, path: str, state: UploadState, staged: Sequence[int]) -> None:
        if not all(self._block(path, index).exists() for index in staged):
            raise UploadLost(path)

    def commit_blocks(self, path: str, count: int) -> None:
        target = self._file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        joined = target.with_name(target.name + ".joining")
        with joined.open("wb") as out:
            for index in range(count):
                out.write(self._block(path, index).read_bytes())
        os.replace(joined, target)  # at once: the file is there whole or not at all
        COMMITS.append(target)
        self.abandon_blocks(path)

    def abandon_blocks(self, path: str) -> None:
        shutil.rmtree(self.root / self.folder / ".blocks" / path, ignore_errors=True)


def check_folder(value: Any, field: str) -> str:
    if not isinstance(value, str) or not FOLDER_NAME.fullmatch(value):
        raise InputError("must be 3 to 63 lower-case letters, digits or '-'", field=field)
    return value


def check_root(value: Any, field: str) -> str:
    root = check_token(value, field, "an absolute directory path")
    if not os.path.isabs(root):
        raise InputError("must be an absolute directory path", field=field)
    return root


def open_folder(secret: str, folder: str | None, prefix: str) -> FolderDestination:
    return FolderDestination(secret, folder or "", prefix)


def _local(servers: Servers, name: str, prefix: str) -> Target:
    """The demo's and the kit's folder: in a fresh temporary directory, removed by `stop()`."""
    root = Path(tempfile.mkdtemp(prefix="folder-destination-"))
    (root / name).mkdir()
    files = root / name

    def names() -> list[str]:
        found = (p for p in files.rglob("*") if p.is_file() and ".blocks" not in p.relative_to(files).parts)
        return sorted(str(p.relative_to(files)) for p in found)

    body = {"type": NAME, "folder": name, "root": str(root), "prefix": prefix}
    return Target(
        NAME,
        f"folder '{name}' in {root}",
        body,
        names,
        lambda path: (files / path).read_bytes(),
        [lambda: shutil.rmtree(root, ignore_errors=True)],
    )


LOCAL = LocalKind(_local)
KIND = DestinationKind(
    name=NAME,
    container_field="folder",
    check_container=check_folder,
    credential_checks={"root": check_root},
    required=("folder", "root"),
    to_secret=lambda fields: fields["root"],
    from_secret=lambda secret: {"root": secret},
    open=open_folder,
    shown=lambda masked: {"root": masked},
    form=Form("A Local Folder", {"folder": "Folder Name", "root": "Root Directory"}, secret=frozenset({"root"})),
    local="tests.folder_destination:LOCAL",
)
