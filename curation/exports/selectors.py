"""Reads of dataset exports: access, their files, and streaming those files back."""
from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

from django.http import Http404

from annotation.selectors import MANAGER_ROLES, project_role
from core.s3 import s3_client, s3_url_signing_client
from curation.exports.options import destination_parse
from curation.models import DatasetExport

_CHUNK = 1024 * 1024


def dataset_export_get_for_user(*, user, export_id: int) -> DatasetExport:
    """The export, if `user` manages its project; Http404 otherwise (nothing is revealed)."""
    export = DatasetExport.objects.select_related("project", "filter_run").filter(pk=export_id).first()
    if export is None or project_role(user=user, project=export.project) not in MANAGER_ROLES:
        raise Http404(f"No export {export_id} that you can see.")
    return export


def dataset_export_files(*, export: DatasetExport) -> list[dict]:
    """The files of a finished export as its manifest lists them, then manifest.json itself."""
    if export.status != DatasetExport.Status.SUCCEEDED or not export.manifest:
        return []
    files = [{"path": f["path"], "bytes": f["bytes"], "rows": f.get("rows"), "sha256": f["sha256"]}
             for f in export.manifest.get("files", [])]
    return files + [{"path": "manifest.json", "bytes": None, "rows": None, "sha256": None}]


def dataset_export_file_open(*, export: DatasetExport, path: str):
    """An open local file, or a signed URL for a file on S3; None when the export lists no such
    file (only listed paths are served, so no path can leave the dataset)."""
    if path not in {f["path"] for f in dataset_export_files(export=export)}:
        return None
    destination = destination_parse(export.destination)
    if destination.is_s3:
        return s3_url_signing_client().generate_presigned_url(
            "get_object", Params={"Bucket": destination.bucket, "Key": destination.key(path)}, ExpiresIn=3600)
    try:
        return open(Path(destination.path) / path, "rb")
    except FileNotFoundError:
        return None


def _chunks(export: DatasetExport, path: str) -> tuple[int, Iterator[bytes]]:
    destination = destination_parse(export.destination)
    if destination.is_s3:
        body = s3_client().get_object(Bucket=destination.bucket, Key=destination.key(path))
        return body["ContentLength"], body["Body"].iter_chunks(_CHUNK)
    local = Path(destination.path) / path

    def read():
        with open(local, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk

    return local.stat().st_size, read()


def dataset_export_tar_stream(*, export: DatasetExport) -> Iterator[bytes]:
    """A tar of every file of the export under one folder, produced as it is sent."""
    folder = f"{export.project.slug}-{export.format}-{export.pk}"
    for entry in dataset_export_files(export=export):
        size, chunks = _chunks(export, entry["path"])
        info = tarfile.TarInfo(f"{folder}/{entry['path']}")
        info.size, info.mode, info.mtime = size, 0o644, 0
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        yield from chunks
        if size % tarfile.BLOCKSIZE:
            yield b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)
