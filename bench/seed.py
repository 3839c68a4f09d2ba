"""Set-based seeding of big projects for benchmarks (no images on disk: rows only)."""
from django.db import connection

from annotation.models import Project


def project_with_comparisons(*, slug: str, comparisons: int, overlap: int = 3, gold_rate: float = 0.0,
                             task_types=("pairwise",)) -> Project:
    """A project of comparisons/6 prompts with 4 images each (6 pairs a prompt), its units open."""
    from annotation.assignment import work_units_open

    project = Project.objects.create(slug=slug, name=slug, overlap=overlap, gold_rate=gold_rate,
                                     task_types=list(task_types))
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
