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

from core.s3 import s3_client
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


def destination_key(destination: Destination) -> str:
    """What two exports may not share: the resolved folder, or the bucket and prefix."""
    if destination.is_s3:
        return f"s3://{destination.bucket}/{destination.prefix}"
    return str(Path(destination.path).expanduser().resolve())


def destination_check_free(destination: Destination) -> None:
    """Refuse, with a ValidationError on `destination`, a place that already holds files."""
    from django.core.exceptions import ValidationError

    if not destination.is_s3:
        target = Path(destination.path).expanduser()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ValidationError({"destination": f"{target} already exists and is not an empty folder; choose a "
                                                  f"new folder (a finished dataset is never overwritten)"})
        return
    try:
        found = S3Prefix(destination, 0).existing_keys(limit=1)
    except ExportError as exc:
        raise ValidationError({"destination": str(exc)}) from None
    if found:
        raise ValidationError({"destination": f"s3://{destination.bucket}/{destination.key('')} already holds "
                                              f"objects ({found[0]}...); choose an empty prefix"})


class LocalFolder:
    """Written in a hidden sibling folder of the target, one per attempt (a worker taken for dead
    that wakes up never writes into its successor's files), renamed into place when complete."""

    def __init__(self, destination: Destination, export_id: int, attempt: int = 1):
        self.target = Path(destination.path).expanduser().resolve()
        self.staging_prefix = f".{self.target.name}.incomplete-{export_id}-"
        self.staging = self.target.parent / f"{self.staging_prefix}{attempt}"

    def check(self) -> None:
        if self.target.exists() and (not self.target.is_dir() or any(self.target.iterdir())):
            raise ExportError(f"destination {self.target} already exists and is not an empty folder; "
                              f"choose a new folder (a finished dataset is never overwritten)")
        self.discard()  # a dead attempt's staging folder
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

    def abort(self, remote: bool = True) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def discard(self, remote: bool = True) -> None:
        """Every attempt's staging folder (the export did not succeed)."""
        if self.target.parent.is_dir():
            for leftover in self.target.parent.glob(f"{self.staging_prefix}*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def published_manifest(self) -> dict | None:
        return _manifest_at(self.target / "manifest.json")

    def location(self, relative: str) -> str:
        return str(self.target / relative)


def _manifest_at(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


class S3Prefix:
    def __init__(self, destination: Destination, export_id: int, attempt: int = 1):
        from boto3.s3.transfer import TransferConfig

        self.destination, self.bucket = destination, destination.bucket
        self.client = s3_client()
        self.transfer = TransferConfig(multipart_threshold=64 * _MB, multipart_chunksize=64 * _MB, max_concurrency=4)
        self.staging_root = Path(settings.EXPORT_STAGING_DIR)
        self.staging_prefix = f"export-{export_id}-"
        self.staging = self.staging_root / f"{self.staging_prefix}{attempt}"
        self.attempt = attempt
        self.uploaded: list[str] = []

    def key(self, relative: str) -> str:
        return self.destination.key(relative)

    def check(self) -> None:
        """The prefix must be empty; on a take-over (attempt > 1) what is there is the dead
        attempt's unpublished upload (the prefix was empty when claimed) and is removed."""
        found = self.existing_keys()
        if found and self.attempt == 1:
            raise ExportError(f"s3://{self.bucket}/{self.key('')} already holds objects ({found[0]}...); "
                              f"choose an empty prefix")
        self._delete(found)
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

    def abort(self, remote: bool = True) -> None:
        if remote:
            self._delete(self.uploaded)
        shutil.rmtree(self.staging, ignore_errors=True)

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk]})
            except Exception:  # best effort: without a manifest, what is left never looks complete
                pass

    def existing_keys(self, limit: int | None = None) -> list[str]:
        """Keys under the prefix (the prefix as a folder: `prefix/...`), at most `limit`."""
        from botocore.exceptions import BotoCoreError, ClientError

        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                              Prefix=self.key("")):
                keys.extend(o["Key"] for o in page.get("Contents", []))
                if limit is not None and len(keys) >= limit:
                    return keys[:limit]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ExportError(f"bucket {self.bucket!r} does not exist") from exc
            if code in ("403", "AccessDenied", "Forbidden"):
                raise ExportError(f"no permission to list bucket {self.bucket!r}") from exc
            raise ExportError(f"bucket {self.bucket!r}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise ExportError(f"cannot reach the S3 endpoint for bucket {self.bucket!r}: {exc}") from exc
        return keys

    def discard(self, remote: bool = True) -> None:
        """Every attempt's staging folder and, with `remote`, everything under the prefix (it was
        empty when the export claimed it, and no other export may claim it or a place inside it
        while this one holds it)."""
        if remote:
            try:
                self._delete(self.existing_keys())
            except ExportError:
                pass
        if self.staging_root.is_dir():
            for leftover in self.staging_root.glob(f"{self.staging_prefix}*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def published_manifest(self) -> dict | None:
        import json

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key("manifest.json"))["Body"].read()
            return json.loads(body)
        except Exception:
            return None

    def location(self, relative: str) -> str:
        return f"s3://{self.bucket}/{self.key(relative)}"


def destination_open(destination: Destination, export_id: int, attempt: int = 1):
    cls = S3Prefix if destination.is_s3 else LocalFolder
    return cls(destination, export_id, attempt)
