"""Where an export's files go, and how it is published so that an interrupted export never looks
complete.

- Local folder: everything is written into a hidden sibling folder (`.<name>.incomplete-<id>`)
  and renamed into place in one step once the manifest is in it.
- s3://bucket/prefix: each finished file is uploaded (boto3 multipart for large files) under the
  prefix and removed from the local staging folder; the dataset card and then manifest.json go
  last. A dataset on S3 is complete exactly when its manifest.json exists; a failed or cancelled
  export deletes what it had uploaded.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

from django.conf import settings

from annotation.image_sources import s3_client
from curation.exports.errors import ExportError
from curation.exports.options import Destination

_MB = 1024 * 1024


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * _MB):
            digest.update(chunk)
    return digest.hexdigest()


def os_error_text(exc: OSError, where) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device while writing {where}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write {where} ({exc.strerror})"
    return f"cannot write {where}: {exc.strerror or exc}"


def _fresh_folder(path: Path, what: str) -> None:
    """An empty folder at `path` (a leftover of an interrupted export there is removed)."""
    try:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    except OSError as exc:
        raise ExportError(os_error_text(exc, what)) from exc


class LocalFolder:
    def __init__(self, destination: Destination, export_id: int):
        self.target = Path(destination.path).expanduser().resolve()
        self.staging = self.target.parent / f".{self.target.name}.incomplete-{export_id}"

    def check(self) -> None:
        if self.target.exists() and (not self.target.is_dir() or any(self.target.iterdir())):
            raise ExportError(f"destination {self.target} already exists and is not an empty folder; "
                              f"choose a new folder (a finished dataset is never overwritten)")
        _fresh_folder(self.staging, f"the destination {self.target}")

    @property
    def root(self) -> Path:
        return self.staging

    def file_done(self, relative: str) -> None:
        pass

    def publish(self) -> None:
        try:
            if self.target.exists():
                self.target.rmdir()  # checked empty above
            os.rename(self.staging, self.target)
        except OSError as exc:
            raise ExportError(os_error_text(exc, f"the destination {self.target}")) from exc

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def location(self, relative: str) -> str:
        return str(self.target / relative)


class S3Prefix:
    def __init__(self, destination: Destination, export_id: int):
        from boto3.s3.transfer import TransferConfig

        self.destination, self.bucket = destination, destination.bucket
        self.client = s3_client()
        self.transfer = TransferConfig(multipart_threshold=64 * _MB, multipart_chunksize=64 * _MB, max_concurrency=4)
        self.staging = Path(settings.EXPORT_STAGING_DIR) / f"export-{export_id}"
        self.uploaded: list[str] = []

    def key(self, relative: str) -> str:
        return self.destination.key(relative)

    def check(self) -> None:
        from botocore.exceptions import ClientError, EndpointConnectionError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.key("manifest.json"), MaxKeys=1)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ExportError(f"bucket {self.bucket!r} does not exist") from exc
            if code in ("403", "AccessDenied", "Forbidden"):
                raise ExportError(f"no permission to write to bucket {self.bucket!r}") from exc
            raise ExportError(f"bucket {self.bucket!r}: {code or exc}") from exc
        except EndpointConnectionError as exc:
            raise ExportError(f"cannot reach the S3 endpoint for bucket {self.bucket!r}: {exc}") from exc
        if found.get("KeyCount", 0) and any(o["Key"] == self.key("manifest.json") for o in found.get("Contents", [])):
            raise ExportError(f"s3://{self.bucket}/{self.key('')} already holds a dataset (it has a manifest.json); "
                              f"choose a new prefix")
        _fresh_folder(self.staging, f"the staging folder {self.staging}")

    @property
    def root(self) -> Path:
        return self.staging

    def file_done(self, relative: str) -> None:
        self._upload(relative)

    def _upload(self, relative: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        local = self.staging / relative
        try:
            self.client.upload_file(str(local), self.bucket, self.key(relative), Config=self.transfer)
        except (ClientError, BotoCoreError) as exc:
            raise ExportError(f"upload of {relative} to s3://{self.bucket}/{self.key(relative)} failed: {exc}") from exc
        self.uploaded.append(self.key(relative))
        local.unlink()

    def publish(self) -> None:
        # The card, then the manifest: with the manifest the dataset is complete.
        for name in ("README.md", "manifest.json"):
            self._upload(name)
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        for start in range(0, len(self.uploaded), 1000):
            chunk = self.uploaded[start:start + 1000]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk]})
            except Exception:  # best effort: without a manifest, what is left never looks complete
                pass
        shutil.rmtree(self.staging, ignore_errors=True)

    def location(self, relative: str) -> str:
        return f"s3://{self.bucket}/{self.key(relative)}"


def destination_open(destination: Destination, export_id: int):
    return S3Prefix(destination, export_id) if destination.is_s3 else LocalFolder(destination, export_id)
