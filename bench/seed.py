"""Set-based seeding of big projects for benchmarks (no images on disk: rows only)."""
from django.db import connection

from annotation.models import Project


def project_with_comparisons(*, slug: str, comparisons: int, overlap: int = 3, gold_rate: float = 0.0,
                             task_types=("pairwise",), **fields) -> Project:
    """A project of comparisons/6 prompts with 4 images each (6 pairs a prompt), its units open."""
    from annotation.assignment import work_units_open

    project = Project.objects.create(slug=slug, name=slug, overlap=overlap, gold_rate=gold_rate,
                                     task_types=list(task_types), **fields)
    prompts = -(-comparisons // 6)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO annotation_prompt (project_id, text, text_sha256, category, external_id, meta, created_at) "
            "SELECT %s, 'prompt ' || g, md5('p' || g) || md5('q' || g), '', '', '{}', now() "
            "FROM generate_series(1, %s) g", [project.id, prompts])
        cursor.execute(
            "INSERT INTO annotation_image (project_id, prompt_id, sha256, storage_key, preview_key, format, width, "
            "height, size_bytes, generator, seed, source_uri, meta, created_at) "
            "SELECT p.project_id, p.id, md5(p.id || '-' || k) || md5(k || '-' || p.id), 'images/x.png', "
            "'previews/x.webp', 'PNG', 512, 512, 1000, 'gen' || k, k, '', '{}', now() "
            "FROM annotation_prompt p CROSS JOIN generate_series(1, 4) k WHERE p.project_id = %s", [project.id])
        cursor.execute(
            "INSERT INTO annotation_comparison (project_id, prompt_id, image_a_id, image_b_id, created_at) "
            "SELECT a.project_id, a.prompt_id, a.id, b.id, now() FROM annotation_image a "
            "JOIN annotation_image b ON b.prompt_id = a.prompt_id AND a.id < b.id WHERE a.project_id = %s "
            "ORDER BY a.prompt_id LIMIT %s", [project.id, comparisons])
        cursor.execute("ANALYZE")
    work_units_open(project=project)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return project


def million_judgments(*, project: Project, annotators: int = 10, judges: int = 4) -> None:
    """Every comparison judged by `annotators` people (rater i right with probability 0.6 + 0.035 i;
    the truth is "a" for even comparison ids) and by `judges` machine judges asked in both orders
    (judge k right 70 + 5k percent of the time): 1,000,000 human judgments and 800,000 machine
    verdicts over 100,000 comparisons with the defaults."""
    from django.contrib.auth import get_user_model

    from annotation.models import MachineAnnotator

    users = [get_user_model().objects.create_user(f"rater{i}") for i in range(annotators)]
    with connection.cursor() as cursor:
        # Each rater answers every comparison: the truth is "a" when the comparison id is even;
        # rater i is right with probability 0.6 + 0.035 i (hash-based, reproducible).
        cursor.execute(
            "INSERT INTO annotation_preferencejudgment (project_id, source, annotator_id, machine_version, "
            "rationale, is_gold, excluded_reason, created_at, comparison_id, aspect, choice, left_image_id) "
            "SELECT c.project_id, 'human', u.id, '', '', false, '', now(), c.id, 'overall', "
            "CASE WHEN (abs(hashtext(c.id || ':' || u.id)) %% 1000) < (600 + 35 * u.n) "
            "     THEN (CASE WHEN c.id %% 2 = 0 THEN 'a' ELSE 'b' END) "
            "     ELSE (CASE WHEN c.id %% 2 = 0 THEN 'b' ELSE 'a' END) END, "
            "CASE WHEN (abs(hashtext(u.id || '/' || c.id)) %% 2) = 0 THEN c.image_a_id ELSE c.image_b_id END "
            "FROM annotation_comparison c CROSS JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n "
            "FROM auth_user WHERE id = ANY(%s)) u WHERE c.project_id = %s",
            [[u.id for u in users], project.id])
        machines = [MachineAnnotator.objects.create(name=f"judge{k}", backend="openai_chat", model_ref="m",
                                                    version=f"v{k}") for k in range(judges)]
        for k, judge in enumerate(machines):
            # judge k is right 70 + 5k percent of the time, in both presentation orders
            cursor.execute(
                "INSERT INTO annotation_preferencejudgment (project_id, source, machine_annotator_id, "
                "machine_version, rationale, is_gold, excluded_reason, created_at, comparison_id, aspect, choice, "
                "left_image_id) "
                "SELECT c.project_id, 'machine', %s, %s, '', false, '', now(), c.id, 'overall', "
                "CASE WHEN (abs(hashtext(c.id || ':' || o.first)) %% 100) < %s "
                "     THEN (CASE WHEN c.id %% 2 = 0 THEN 'a' ELSE 'b' END) "
                "     ELSE (CASE WHEN c.id %% 2 = 0 THEN 'b' ELSE 'a' END) END, "
                "CASE WHEN o.first = 0 THEN c.image_a_id ELSE c.image_b_id END "
                "FROM annotation_comparison c CROSS JOIN (VALUES (0), (1)) o(first) WHERE c.project_id = %s",
                [judge.id, judge.version, 70 + 5 * k, project.id])
        cursor.execute("ANALYZE annotation_preferencejudgment")
