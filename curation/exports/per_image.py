"""Per-image formats: VisionPrefer (each prompt's images with every aspect's score and rationale
from one source, plus pairs derived per aspect) and PAMELA (one row per person and image rating,
with the person's consented profile, split into seen / unseen people and images)."""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from itertools import combinations

import pyarrow as pa
from django.db import connection

from annotation.models import MachineAnnotator
from curation.exports.options import ExportOptions
from curation.exports.sources import epoch_us, pages, pseudonym, pseudonyms_ensure, scalar, stream, timestamp
from curation.selectors import live_human_sql
from curation.exports.tables import TIMESTAMP, ImageColumn, Table, column_batches
from curation.models import FilterRun

PROMPTS_PER_PAGE = 500


class _Scores:
    """Where VisionPrefer scores come from: the mean of live human scores, or one machine annotator's
    current version (with its rationales)."""

    def __init__(self, project, source: str, aspects: list[str]):
        self.project = project
        self.aspects = aspects
        self.machine = None
        if source != "human":
            self.machine = MachineAnnotator.objects.get(name=source)  # checked by the export service
        marks = ", ".join(["%s"] * len(aspects))
        if self.machine is None:
            self.select = (f"SELECT s.image_id, s.aspect, AVG(s.value), NULL FROM annotation_aspectscore s "
                           f"JOIN annotation_image i ON i.id = s.image_id WHERE i.project_id = %s AND {live_human_sql('s')} "
                           f"AND s.aspect IN ({marks}) {{range}} GROUP BY s.image_id, s.aspect")
            self.params = [project.pk, *aspects]
        else:
            self.select = (f"SELECT s.image_id, s.aspect, s.value, s.rationale FROM annotation_aspectscore s "
                           f"JOIN annotation_image i ON i.id = s.image_id WHERE i.project_id = %s "
                           f"AND s.source = 'machine' AND s.machine_annotator_id = %s AND s.machine_version = %s "
                           f"AND s.aspect IN ({marks}) {{range}}")
            self.params = [project.pk, self.machine.pk, self.machine.version, *aspects]

    def prompts_scored(self) -> int:
        sql = f"SELECT COUNT(DISTINCT i.prompt_id) FROM ({self.select.format(range='')}) x " \
              f"JOIN annotation_image i ON i.id = x.image_id"
        return scalar(sql, self.params) or 0

    def groups(self, run: FilterRun | None) -> Iterator[tuple]:
        """(prompt row, its images, {(image id, aspect): (score, rationale)}, kept image pairs or None)
        for every prompt with at least one score, in prompt order."""
        from django.db import connection

        prompt_sql = ("SELECT p.id, p.text, p.external_id, p.category FROM annotation_prompt p "
                      "WHERE p.project_id = %s AND p.id > %s ORDER BY p.id")
        for prompts in pages(prompt_sql, [self.project.pk], page_rows=PROMPTS_PER_PAGE):
            low, high = prompts[0][0] - 1, prompts[-1][0]
            bounds = [low, high]
            with connection.cursor() as cursor:
                cursor.execute("SELECT i.prompt_id, i.id, i.sha256, i.storage_key, i.generator FROM annotation_image i "
                               "WHERE i.project_id = %s AND i.prompt_id > %s AND i.prompt_id <= %s "
                               "ORDER BY i.prompt_id, i.id", [self.project.pk, *bounds])
                images = cursor.fetchall()
                cursor.execute(self.select.format(range="AND i.prompt_id > %s AND i.prompt_id <= %s"),
                               [*self.params, *bounds])
                scores = {}
                for image_id, aspect, value, rationale in cursor.fetchall():
                    if value is not None and not math.isnan(value):
                        scores[(image_id, aspect)] = (float(value), rationale or None)
                kept = None
                if run is not None:
                    cursor.execute("SELECT c.image_a_id, c.image_b_id FROM curation_unitverdict v "
                                   "JOIN annotation_comparison c ON c.id = v.comparison_id WHERE v.run_id = %s "
                                   "AND v.keep AND c.prompt_id > %s AND c.prompt_id <= %s", [run.pk, *bounds])
                    kept = {frozenset(pair) for pair in cursor.fetchall()}
            by_prompt: dict[int, list] = {}
            for row in images:
                by_prompt.setdefault(row[0], []).append(row[1:])
            for prompt in prompts:
                mine = by_prompt.get(prompt[0], [])
                if any((image[0], aspect) in scores for image in mine for aspect in self.aspects):
                    yield prompt, mine, scores, kept


def visionprefer_tables(*, project, run: FilterRun | None, options: ExportOptions) -> list[Table]:
    aspects = options.aspects or project.aspect_keys  # known to the project (checked by the export service)
    scores = _Scores(project, options.source, aspects)
    source_name = scores.machine.name if scores.machine else "human consensus (mean score)"

    image_fields = [("prompt", pa.string()), ("prompt_id", pa.string()), ("category", pa.string()),
                    ("images", pa.binary()), ("image_uids", pa.list_(pa.string())),
                    ("image_urls", pa.list_(pa.string())), ("models", pa.list_(pa.string()))]
    for aspect in aspects:
        image_fields += [(f"{aspect}_score", pa.list_(pa.float64())), (f"{aspect}_rationale", pa.list_(pa.string()))]
    image_fields.append(("score_source", pa.string()))
    images_column = (ImageColumn("images", key="_keys", uid="image_uids", url="image_urls", feature="image",
                                 many=True),)

    def image_rows():
        for page in _paged(scores.groups(None)):
            rows = []
            for (prompt_id, text, external_id, category), images, found, _ in page:
                row = [text, external_id or str(prompt_id), category, [i[1] for i in images],
                       [i[3] for i in images]]
                for aspect in aspects:
                    values = [found.get((i[0], aspect)) for i in images]
                    row += [[v[0] if v else None for v in values], [v[1] if v else None for v in values]]
                rows.append((*row, source_name, [i[2] for i in images]))
            yield rows

    image_names = ["prompt", "prompt_id", "category", "image_uids", "models"]
    for aspect in aspects:
        image_names += [f"{aspect}_score", f"{aspect}_rationale"]
    image_names += ["score_source", "_keys"]
    images_table = Table(
        config="images", split="train", fields=image_fields, images=images_column, count=scores.prompts_scored(),
        batches=lambda: column_batches(image_rows(), image_names),
        description={"prompt": "the prompt", "prompt_id": "the prompt's external id", "images": "its images (HF Image)",
                     "image_uids": "sha256 of each image", "models": "generator of each image",
                     "<aspect>_score": f"each image's score on the aspect ({source_name}; null if unscored)",
                     "<aspect>_rationale": "the judge's rationale for that score (null for people)",
                     "score_source": "where the scores come from"})

    pair_fields = [("prompt", pa.string()), ("aspect", pa.string()), ("chosen", pa.binary()),
                   ("rejected", pa.binary()), ("chosen_uid", pa.string()), ("rejected_uid", pa.string()),
                   ("chosen_model", pa.string()), ("rejected_model", pa.string()), ("chosen_score", pa.float64()),
                   ("rejected_score", pa.float64()), ("margin", pa.float64()), ("chosen_url", pa.string()),
                   ("rejected_url", pa.string())]
    pair_images = (ImageColumn("chosen", key="_key_chosen", uid="chosen_uid", url="chosen_url", feature="image"),
                   ImageColumn("rejected", key="_key_rejected", uid="rejected_uid", url="rejected_url",
                               feature="image"))

    def pair_rows():
        for page in _paged(scores.groups(run)):
            rows = []
            for (_, text, _, _), images, found, kept in page:
                for aspect in aspects:
                    for first, second in combinations(images, 2):
                        s1, s2 = found.get((first[0], aspect)), found.get((second[0], aspect))
                        if s1 is None or s2 is None or s1[0] == s2[0]:
                            continue  # unscored, or a tie: VisionPrefer drops ties
                        if kept is not None and frozenset((first[0], second[0])) not in kept:
                            continue
                        (win, ws), (lose, ls) = ((first, s1), (second, s2)) if s1[0] > s2[0] else \
                            ((second, s2), (first, s1))
                        rows.append((text, aspect, win[1], lose[1], win[3], lose[3], ws[0], ls[0], ws[0] - ls[0],
                                     win[2], lose[2]))
            yield rows

    pair_names = ["prompt", "aspect", "chosen_uid", "rejected_uid", "chosen_model", "rejected_model", "chosen_score",
                  "rejected_score", "margin", "_key_chosen", "_key_rejected"]
    pairs_table = Table(
        config="pairs", split="train", fields=pair_fields, images=pair_images, count=0,
        batches=lambda: column_batches(pair_rows(), pair_names),
        description={"prompt": "the prompt", "aspect": "the aspect compared", "chosen": "the higher-scored image",
                     "rejected": "the lower-scored image", "margin": "chosen_score - rejected_score",
                     "chosen_uid / rejected_uid": "sha256 of the images"
                     + ("; only pairs the filter run kept" if run is not None else "")})
    return [images_table, pairs_table]


def _paged(groups: Iterator, size: int = 200) -> Iterator[list]:
    page = []
    for group in groups:
        page.append(group)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


PAMELA_SPLITS = ("train", "val_seen", "val_unseen", "test_seen", "test_unseen")
PAMELA_FIELDS = [
    ("user_id", pa.string()), ("age_band", pa.string()), ("gender", pa.string()), ("nationality", pa.string()),
    ("art_experience", pa.string()), ("photography_experience", pa.string()), ("image", pa.binary()),
    ("image_uid", pa.string()), ("image_url", pa.string()), ("prompt", pa.string()), ("category", pa.string()),
    ("generator", pa.string()), ("rating", pa.int16()), ("created_at", TIMESTAMP),
]


class PamelaSplitter:
    """Which split a (person, image) rating falls in. People held out are unseen: all their
    ratings go to val_unseen or test_unseen (half the people each). The other people's ratings of
    held-out images go to val_seen or test_seen (half the images each); the rest is train.

    Shares are drawn by hashing the pseudonym or uid with the seed: a person (image) is held out
    when their draw is below the share, so adding data moves no one. A share of people is a
    fraction, and a handful of people may all draw above it, leaving the unseen splits empty;
    then, once two or more people rated, the one with the lowest draw is held out (the person a
    growing share would take first). They stay unseen while the set of people is the same; a new
    person who draws lower, or below the share, takes their place. A single person is never held
    out by a share: nothing would be left to train on. A list of pseudonyms is used as given.
    `notes` says, for the dataset card, when one of these two rules applied."""

    def __init__(self, options: ExportOptions, *, people: Iterable[str]):
        """`people`: the pseudonyms of everyone whose ratings the export holds."""
        self.options = options
        self.picked: str | None = None  # held out by the at-least-one rule
        self.nobody = False  # a share that would hold out the only person holds out no one
        self.notes: tuple[str, ...] = ()
        share = options.unseen_people
        if isinstance(share, list) or share <= 0:
            return
        people = sorted(set(people))
        if len(people) == 1:
            self.nobody = True
            self.notes = ((f"Only one person rated: unseen_people = {share} holds out no one, so val_unseen and "
                           f"test_unseen are empty (holding out the only person would leave nothing to train on)."),)
        elif people and not any(self._draw(options.seed, "person", p) < share for p in people):
            self.picked = min(people, key=lambda p: (self._draw(options.seed, "person", p), p))
            split = "test_unseen" if self._draw(options.seed, "person-half", self.picked) < 0.5 else "val_unseen"
            self.notes = ((f"unseen_people = {share} of the {len(people)} people who rated holds out no one, so one "
                           f"person is held out as unseen: {self.picked} (the lowest draw for seed {options.seed}); "
                           f"all their ratings are in {split}."),)

    @staticmethod
    def _draw(seed: int, kind: str, value: str) -> float:
        digest = hashlib.sha256(f"{seed}:{kind}:{value}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _held_out(self, spec, kind: str, value: str) -> tuple[bool, bool]:
        """(held out, goes to test)."""
        half = self._draw(self.options.seed, f"{kind}-half", value) < 0.5
        if isinstance(spec, list):
            return value in spec, half
        return self._draw(self.options.seed, kind, value) < spec, half

    def split(self, person: str, image_uid: str) -> str:
        unseen, test = self._held_out(self.options.unseen_people, "person", person)
        if self.picked is not None or self.nobody:
            unseen = person == self.picked
        if unseen:
            return "test_unseen" if test else "val_unseen"
        held, test = self._held_out(self.options.unseen_images, "image", image_uid)
        if held:
            return "test_seen" if test else "val_seen"
        return "train"


def pamela_tables(*, project, run: FilterRun | None, options: ExportOptions) -> list[Table]:
    pseudonyms_ensure(table="annotation_personalrating", project_id=project.pk)
    ceiling = scalar("SELECT MAX(id) FROM annotation_personalrating WHERE project_id = %s", [project.pk]) or 0
    where = f"r.project_id = %s AND {live_human_sql('r')} AND r.id <= %s"
    params = [project.pk, ceiling]
    people_sql = ("SELECT DISTINCT prof.pseudonym FROM annotation_personalrating r JOIN annotation_annotatorprofile "
                  f"prof ON prof.user_id = r.annotator_id WHERE {where}")
    with connection.cursor() as cursor:
        cursor.execute(people_sql, params)
        people = [pseudonym(row[0]) for row in cursor.fetchall()]
    splitter = PamelaSplitter(options, people=people)
    counts = dict.fromkeys(PAMELA_SPLITS, 0)
    key_sql = ("SELECT r.id, prof.pseudonym, i.sha256 FROM annotation_personalrating r "
               "JOIN annotation_image i ON i.id = r.image_id JOIN annotation_annotatorprofile prof "
               f"ON prof.user_id = r.annotator_id WHERE {where} ORDER BY r.id")
    for page in stream(key_sql, params):
        for _, person, uid in page:
            counts[splitter.split(pseudonym(person), uid)] += 1

    sql = (f"SELECT r.id, prof.pseudonym, prof.consent_at, prof.age_band, prof.gender, prof.nationality, "
           "prof.art_experience, prof.photography_experience, i.sha256, i.storage_key, p.text, p.category, "
           f"i.generator, r.value, {epoch_us('r.created_at')} FROM annotation_personalrating r "
           "JOIN annotation_image i ON i.id = r.image_id JOIN annotation_prompt p ON p.id = i.prompt_id "
           "JOIN annotation_annotatorprofile prof ON prof.user_id = r.annotator_id "
           f"WHERE {where} ORDER BY r.id")
    names = ["user_id", "age_band", "gender", "nationality", "art_experience", "photography_experience",
             "image_uid", "prompt", "category", "generator", "rating", "created_at", "_key"]

    def rows_of(split):
        for page in stream(sql, params):
            rows = []
            for (_, person, consent_at, age, gender, nationality, art, photo, uid, key, text, category, generator,
                 value, created_at) in page:
                person = pseudonym(person)
                if splitter.split(person, uid) != split:
                    continue
                profile = [v or None for v in (age, gender, nationality, art, photo)] if consent_at else [None] * 5
                rows.append((person, *profile, uid, text, category, generator, value, timestamp(created_at), key))
            yield rows

    description = {
        "user_id": "the person's stable pseudonym (never a username or email)",
        "age_band / gender / nationality / art_experience / photography_experience":
            "the person's profile, only where they consented (null otherwise)",
        "image": "the rated image (HF Image)", "image_uid": "its sha256", "prompt": "its prompt",
        "category": "the prompt's category", "generator": "the model that made the image",
        "rating": f"how much the person likes it, 1..{project.rating_scale}", "created_at": "when they rated it"}
    images = (ImageColumn("image", key="_key", uid="image_uid", url="image_url", feature="image"),)
    return [Table(config="default", split=split, fields=PAMELA_FIELDS, images=images, count=counts[split],
                  batches=lambda split=split: column_batches(rows_of(split), names), description=description,
                  notes=splitter.notes)
            for split in PAMELA_SPLITS]
