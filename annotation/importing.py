"""Importing prompts and images from a JSONL manifest (the command line and the import job).

A manifest is read in chunks. For each chunk: lines are parsed and checked; each distinct image
reference is read, checked and stored once (a bounded cache remembers the outcome for later
lines); then prompts, images and comparisons are bulk-created in one transaction. Lines that
fail are reported with their number and reason and never stop their neighbours. Running the
same manifest again creates nothing: prompts are unique per project and text, images per
prompt and sha256, comparisons per pair.
"""
import json
import math
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations

from django.conf import settings
from django.db import transaction
from django.db.models import Count

from annotation.bulk import db_now, insert_new_rows, insert_rows, reserve_ids
from annotation.image_files import ImageCheckError, StoredImage, check_and_store
from annotation.image_sources import ImageSourceError, SourcePolicy, read_image_source
from annotation.models import Comparison, Image, Project, Prompt, text_digest
from core.text import UNSTORABLE

READ_THREADS = 4
_BIGINT = 2**63
ALLOWED_KEYS = {"prompt", "image", "generator", "seed", "category", "meta", "external_id"}


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    message: str

    def __str__(self):
        where = f" [{self.field}]" if self.field else ""
        return f"line {self.line}{where}: {self.message}"


@dataclass
class ImportSummary:
    lines: int = 0
    images_created: int = 0
    duplicates: int = 0
    prompts_created: int = 0
    comparisons_created: int = 0
    errors: list[LineError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)


@dataclass(frozen=True)
class ManifestEntry:
    line: int
    prompt: str
    image: str
    generator: str
    seed: int | None
    category: str
    external_id: str
    meta: dict


class LineInvalid(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _finite_number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def _not_a_json_number(name: str):
    raise ValueError(f"{name} is not a JSON number")


# PostgreSQL stores no NUL in text or jsonb, and text holding an unpaired surrogate cannot be
# encoded as UTF-8 (core.text): a value with either would fail its whole chunk.


def _unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    match = UNSTORABLE.search(text)
    if match is None:
        return None
    char = match.group()
    return "contains a NUL character" if char == "\x00" else f"contains an unpaired surrogate \\u{ord(char):04x}"


def _shown(text: str, limit: int = 80) -> str:
    """`text` safe to store in an error message: NULs and unpaired surrogates written as escapes."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# A parsed line can only hold a NUL or an unpaired surrogate if its text holds one, or an escape
# that makes one (\u0000, \ud800-\udfff): lines without either skip the walk over every value.
_MAY_BE_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]|\\u(?:0000|[dD][89a-fA-F])")


def _check_storable(obj: dict) -> None:
    """Raise LineInvalid for the first key or string anywhere in the line that cannot be stored."""
    for key in obj:
        problem = _unstorable(key)
        if problem:
            raise LineInvalid("", f"field name '{_shown(key)}' {problem}")
    for top, value in obj.items():
        stack = [(top, value)]  # iterative: a deeply nested meta must not exhaust the stack
        while stack:
            where, value = stack.pop()
            if isinstance(value, str):
                problem = _unstorable(value)
                if problem:
                    raise LineInvalid(top, f"{where} {problem}")
            elif isinstance(value, dict):
                for key, inner in value.items():
                    problem = _unstorable(key)
                    if problem:
                        raise LineInvalid(top, f"{where} has a key '{_shown(key)}' that {problem}")
                stack.extend((f"{where}.{key}", inner) for key, inner in reversed(value.items()))
            elif isinstance(value, list):
                stack.extend((f"{where}[{i}]", inner) for i, inner in reversed(list(enumerate(value))))


def parse_line(number: int, raw: str) -> ManifestEntry:
    """Parse one manifest line; raises LineInvalid naming the field at fault.

    Whatever the line holds, it is refused here rather than failing later, in the database."""
    try:
        obj = json.loads(raw, parse_float=_finite_number, parse_constant=_not_a_json_number)
    except json.JSONDecodeError as exc:
        raise LineInvalid("", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # NaN, 1e999, or an integer of thousands of digits
        raise LineInvalid("", f"not valid JSON ({exc})") from None
    except RecursionError:
        raise LineInvalid("", "not valid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise LineInvalid("", "a line must be a JSON object")
    if _MAY_BE_UNSTORABLE.search(raw):
        _check_storable(obj)
    unknown = set(obj) - ALLOWED_KEYS
    if unknown:
        raise LineInvalid(sorted(unknown)[0], f"unknown field(s) {', '.join(sorted(unknown))}; "
                                              f"allowed: {', '.join(sorted(ALLOWED_KEYS))}")
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise LineInvalid("prompt", "required, a non-empty string")
    prompt = prompt.strip()
    if len(prompt) > settings.IMPORT_PROMPT_MAX_CHARS:
        raise LineInvalid("prompt", f"{len(prompt)} characters, over the {settings.IMPORT_PROMPT_MAX_CHARS}-character limit")
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        raise LineInvalid("image", "required, a path, s3:// key or http(s) URL")
    seed = obj.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -_BIGINT <= seed < _BIGINT):
        raise LineInvalid("seed", "must be an integer within 64 bits")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise LineInvalid("meta", "must be a JSON object")
    texts = {}
    for key, limit in (("generator", 200), ("category", 100), ("external_id", 200)):
        value = obj.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise LineInvalid(key, "must be a string")
        if len(value) > limit:
            raise LineInvalid(key, f"over the {limit}-character limit")
        texts[key] = value
    return ManifestEntry(line=number, prompt=prompt, image=image.strip(), seed=seed, meta=meta, **texts)


class ImageResolver:
    """Reads, checks and stores each distinct image reference once, remembering the outcome
    (a StoredImage or the error message) for the most recent `capacity` references."""

    def __init__(self, policy: SourcePolicy, capacity: int = 100_000):
        self.policy = policy
        self.capacity = capacity
        self._known: OrderedDict[str, StoredImage | str] = OrderedDict()

    def _resolve_one(self, ref: str) -> StoredImage | str:
        try:
            return check_and_store(read_image_source(ref, self.policy))
        except (ImageSourceError, ImageCheckError) as exc:
            return str(exc)

    def resolve(self, refs: Iterable[str]) -> dict[str, StoredImage | str]:
        wanted = list(dict.fromkeys(refs))
        missing = [r for r in wanted if r not in self._known]
        if missing:
            if len(missing) == 1:
                results = [self._resolve_one(missing[0])]
            else:
                with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
                    results = list(pool.map(self._resolve_one, missing))
            for ref, outcome in zip(missing, results):
                self._known[ref] = outcome
        out = {}
        for ref in wanted:
            self._known.move_to_end(ref)
            out[ref] = self._known[ref]
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)
        return out


# JSON's whitespace (and what splits lines): a line of nothing else is blank and skipped.
_BLANK = " \t\r\n\x0b\x0c"
_BLANK_BYTES = _BLANK.encode()


def iter_numbered_lines(lines: Iterable[str | bytes]) -> Iterator[tuple[int, str | LineInvalid]]:
    """The non-blank lines with their 1-based numbers; a line of bytes that is not valid UTF-8
    comes as a LineInvalid naming the offset of its first invalid byte, in the line and (when
    every line came as bytes) in the file."""
    offset: int | None = 0
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            line_offset = offset
            offset = None if offset is None else offset + len(raw)
            if not raw.strip(_BLANK_BYTES):
                continue
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                where = f"offset {exc.start} of the line"
                if line_offset is not None:
                    where += f", byte {line_offset + exc.start} of the file"
                yield number, LineInvalid("", f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at {where} "
                                              f"(offsets count bytes from 0)")
                continue
        else:
            offset = None
            if not raw.strip(_BLANK):
                continue
        yield number, raw


def manifest_line_count(manifest, chunk_size: int = 1 << 20) -> int:
    """How many lines `manifest` (a binary file) holds that `iter_numbered_lines` would yield,
    read `chunk_size` bytes at a time (a line may be longer than memory should hold). Leaves the
    file at its start."""
    manifest.seek(0)
    count, pending = 0, False  # pending: the line being read has a non-blank byte
    while chunk := manifest.read(chunk_size):
        pieces = chunk.split(b"\n")
        for piece in pieces[:-1]:
            if pending or piece.strip(_BLANK_BYTES):
                count += 1
            pending = False
        pending = pending or bool(pieces[-1].strip(_BLANK_BYTES))
    manifest.seek(0)
    return count + pending


def manifest_import(
    *,
    project: Project,
    lines: Iterable[str | bytes],
    policy: SourcePolicy,
    max_pairs_per_prompt: int | None = None,
    on_chunk: Callable[[ImportSummary, list[LineError]], None] | None = None,
    before_chunk: Callable[[], None] | None = None,
    resolver: ImageResolver | None = None,
    skip_lines: int = 0,
    summary: ImportSummary | None = None,
) -> ImportSummary:
    """Import every good line of a manifest into `project`; returns counts and per-line errors.

    `on_chunk(summary, new_errors)` is called inside each chunk's transaction, after its writes
    (progress and job state commit with the chunk, or not at all). `before_chunk()` is called
    before each chunk is read (a checkpoint: it may raise to stop). The first `skip_lines`
    non-blank lines are skipped (they were imported by an earlier, interrupted run whose counts
    `summary` carries on).
    """
    summary = summary or ImportSummary()
    resolver = resolver or ImageResolver(policy)
    chunk: list[tuple[int, str | LineInvalid]] = []
    for index, numbered in enumerate(iter_numbered_lines(lines)):
        if index < skip_lines:
            continue
        chunk.append(numbered)
        if len(chunk) >= settings.IMPORT_CHUNK_LINES:
            _import_chunk(project, chunk, resolver, max_pairs_per_prompt, summary, on_chunk, before_chunk)
            chunk = []
    if chunk:
        _import_chunk(project, chunk, resolver, max_pairs_per_prompt, summary, on_chunk, before_chunk)
    return summary


def _import_chunk(project, chunk, resolver, max_pairs, summary, on_chunk, before_chunk):
    if before_chunk:
        before_chunk()
    errors: list[LineError] = []
    entries: list[ManifestEntry] = []
    for number, raw in chunk:
        try:
            if isinstance(raw, LineInvalid):
                raise raw
            entries.append(parse_line(number, raw))
        except LineInvalid as exc:
            errors.append(LineError(number, exc.field, exc.message))
    outcomes = resolver.resolve(e.image for e in entries)
    good: list[tuple[ManifestEntry, StoredImage]] = []
    for entry in entries:
        outcome = outcomes[entry.image]
        if isinstance(outcome, str):
            errors.append(LineError(entry.line, "image", outcome))
        else:
            good.append((entry, outcome))
    errors.sort(key=lambda e: e.line)
    with transaction.atomic():
        prompt_ids, new_prompts = _ensure_prompts(project, [e for e, _ in good])
        created, duplicates, new_by_prompt = _create_images(project, good, prompt_ids, new_prompts)
        comparisons = _create_comparisons(project, new_by_prompt, new_prompts, max_pairs) if new_by_prompt else 0
        after = ImportSummary(lines=summary.lines + len(chunk), prompts_created=summary.prompts_created + len(new_prompts),
                              images_created=summary.images_created + created,
                              duplicates=summary.duplicates + duplicates,
                              comparisons_created=summary.comparisons_created + comparisons,
                              errors=summary.errors + errors)
        if on_chunk:
            on_chunk(after, errors)
    summary.lines, summary.prompts_created, summary.images_created = after.lines, after.prompts_created, after.images_created
    summary.duplicates, summary.comparisons_created = after.duplicates, after.comparisons_created
    summary.errors.extend(errors)


def _ensure_prompts(project, entries):
    """Ids of the entries' prompts by text, creating the missing ones; returns (ids, created ids)."""
    first_by_digest: dict[str, ManifestEntry] = {}
    for entry in entries:
        first_by_digest.setdefault(text_digest(entry.prompt), entry)
    now = db_now()
    created = insert_new_rows(
        Prompt, ["project_id", "text", "text_sha256", "category", "external_id", "meta", "created_at"],
        [(project.id, e.prompt, d, e.category, e.external_id, "{}", now) for d, e in first_by_digest.items()],
        returning=["text_sha256", "id"],
    )
    ids = dict(created)
    existing = [d for d in first_by_digest if d not in ids]
    if existing:
        ids.update(Prompt.objects.filter(project=project, text_sha256__in=existing).values_list("text_sha256", "id"))
    return {first_by_digest[d].prompt: pid for d, pid in ids.items()}, {pid for _, pid in created}


IMAGE_COLUMNS = ["project_id", "prompt_id", "sha256", "storage_key", "preview_key", "format", "width", "height",
                 "size_bytes", "generator", "seed", "source_uri", "meta", "created_at"]


def _create_images(project, good, prompt_ids, new_prompts):
    """Create the images not yet stored for their prompt.

    Images of prompts created in this chunk's transaction cannot exist yet, so they are written
    with plain inserts; only images of older prompts go through insert-or-skip.
    Returns (created, duplicates, {prompt id: ids of its new images})."""
    now = db_now()
    fresh, older, seen = [], [], set()
    for entry, stored in good:
        key = (prompt_ids[entry.prompt], stored.sha256)
        if key in seen:
            continue
        seen.add(key)
        (fresh if key[0] in new_prompts else older).append((
            project.id, key[0], stored.sha256, stored.storage_key, stored.preview_key, stored.format, stored.width,
            stored.height, stored.size_bytes, entry.generator, entry.seed, entry.image[:2000],
            json.dumps(entry.meta) if entry.meta else "{}", now))
    ids = reserve_ids(Image, len(fresh))
    if ids is None:  # no sequence to draw ids from (SQLite): one insert-or-skip for all
        older, fresh = older + fresh, []
    inserted = insert_new_rows(Image, IMAGE_COLUMNS, older, returning=["id", "prompt_id"])
    if fresh:
        insert_rows(Image, ["id", *IMAGE_COLUMNS], [(image_id, *row) for image_id, row in zip(ids, fresh)])
        inserted += [(image_id, row[1]) for image_id, row in zip(ids, fresh)]
    new_by_prompt: dict[int, set[int]] = {}
    for image_id, prompt_id in inserted:
        new_by_prompt.setdefault(prompt_id, set()).add(image_id)
    return len(inserted), len(good) - len(inserted), new_by_prompt


def _create_comparisons(project, new_by_prompt, new_prompts, max_pairs):
    """Pair each new image with every other image of its prompt (at most `max_pairs` per prompt).

    A prompt created in this chunk has only new images, so only older prompts are looked up."""
    images_by_prompt = {pid: sorted(ids) for pid, ids in new_by_prompt.items() if pid in new_prompts}
    older = [pid for pid in new_by_prompt if pid not in new_prompts]
    for image_id, prompt_id in Image.objects.filter(prompt_id__in=older).values_list("id", "prompt_id").order_by("id"):
        images_by_prompt.setdefault(prompt_id, []).append(image_id)
    counts = {}
    if max_pairs is not None:
        counts = dict(Comparison.objects.filter(prompt_id__in=list(new_by_prompt)).values_list("prompt_id")
                      .annotate(n=Count("id")).values_list("prompt_id", "n"))
    now = db_now()
    rows = []
    for prompt_id, image_ids in images_by_prompt.items():
        new = new_by_prompt[prompt_id]
        candidates = [(a, b) for a, b in combinations(image_ids, 2) if a in new or b in new]
        if max_pairs is not None:
            room = max(0, max_pairs - counts.get(prompt_id, 0))
            if room < len(candidates):
                # A seeded shuffle keeps the capped choice spread over the prompt's images and
                # the same on every run.
                random.Random(prompt_id).shuffle(candidates)
                candidates = sorted(candidates[:room])
        rows.extend((project.id, prompt_id, a, b, now) for a, b in candidates)
    # Every pair holds an image inserted by this still-open transaction, so no other import can
    # have stored it: plain inserts are safe, and faster than insert-or-skip.
    return insert_rows(Comparison, ["project_id", "prompt_id", "image_a_id", "image_b_id", "created_at"], rows)
