"""Whether the files of the images a filter run keeps are still in storage."""
from __future__ import annotations

import posixpath

import numpy as np
from django.core.files.storage import default_storage

from annotation.models import Image


def missing_image_files(*, project_id: int, image_ids: np.ndarray) -> dict[int, str]:
    """For each image of `image_ids` whose original or preview file is not in the default
    storage: its id -> what is missing ("original images/ab/....png"). One directory listing
    per folder holding any of the keys (files are content-addressed into a few folders), not
    one request per file."""
    wanted = set(int(i) for i in image_ids)
    keys = [(image_id, kind, key) for image_id, original, preview in
            Image.objects.filter(project_id=project_id).values_list("id", "storage_key", "preview_key")
            if image_id in wanted for kind, key in (("original", original), ("preview", preview))]
    present: dict[str, set[str]] = {}
    for folder in sorted({posixpath.dirname(key) for _, _, key in keys}):
        try:
            present[folder] = set(default_storage.listdir(folder)[1])
        except (FileNotFoundError, NotADirectoryError):
            present[folder] = set()
    missing: dict[int, list[str]] = {}
    for image_id, kind, key in keys:
        if posixpath.basename(key) not in present[posixpath.dirname(key)]:
            missing.setdefault(image_id, []).append(f"{kind} {key}")
    return {image_id: " and ".join(parts) for image_id, parts in missing.items()}
