"""Import throughput: a manifest of N lines referencing 1,000 distinct small image files,
imported into PostgreSQL (issue: >= 20,000 lines/s once the images are hashed, memory flat).

The 1,000 files are first read, checked, hashed and stored once (reported separately as
`import_image_prepare_per_second`); the timed run then imports the whole manifest, every
line going through parsing, prompt/image/comparison bulk inserts and the resolver's cache.
"""
import argparse
import io
import json
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb, report, setup_django


def make_images(folder: Path, count: int) -> list[str]:
    from PIL import Image

    names = []
    for i in range(count):
        name = f"img{i:05d}.png"
        buf = io.BytesIO()
        Image.new("RGB", (96, 96), ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)).save(buf, "PNG")
        (folder / name).write_bytes(buf.getvalue())
        names.append(name)
    return names


def make_manifest(path: Path, names: list[str], lines: int, images_per_prompt: int = 4) -> None:
    with open(path, "w") as handle:
        for n in range(lines):
            prompt, k = divmod(n, images_per_prompt)
            handle.write(json.dumps({
                "prompt": f"a photo of {prompt % 7 + 1} red cubes on a table, variation {prompt}",
                "image": names[(prompt * images_per_prompt + k) % len(names)],
                "generator": ["sd15", "sd21", "sdxl", "dreamlike"][k % 4], "seed": n, "category": "counting",
            }) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=1_000)
    parser.add_argument("--fresh-database", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    import os
    os.environ["DJANGO_MEDIA_ROOT"] = str(work / "media")
    setup_django(fresh_database=args.fresh_database)

    from annotation.image_sources import SourcePolicy
    from annotation.importing import ImageResolver, manifest_import
    from annotation.models import Comparison, Image, Project

    images = work / "images"
    images.mkdir()
    names = make_images(images, args.images)
    manifest = work / "manifest.jsonl"
    make_manifest(manifest, names, args.lines)
    project = Project.objects.create(slug=f"bench-import-{int(time.time() * 1000)}", name="bench")
    policy = SourcePolicy.from_settings(images_root=images)
    resolver = ImageResolver(policy)

    started = time.perf_counter()
    resolver.resolve(names)
    prepare_s = time.perf_counter() - started
    rss_before = peak_rss_mb()

    started = time.perf_counter()
    with open(manifest, "rb") as handle:
        summary = manifest_import(project=project, lines=handle, policy=policy, resolver=resolver)
    import_s = time.perf_counter() - started

    assert summary.rejected == 0, summary.errors[:3]
    assert Image.objects.filter(project=project).count() == args.lines
    context = {"lines": args.lines, "distinct_images": args.images,
               "comparisons": Comparison.objects.filter(project=project).count(), "database": "postgresql"}
    report("import_image_prepare_per_second", args.images / prepare_s, "images/s", **context)
    report("import_lines_per_second", args.lines / import_s, "lines/s", target=">= 20000", **context)
    report("import_peak_rss_mb", peak_rss_mb(), "MB", target="flat in the manifest's length",
           rss_before_import_mb=round(rss_before, 1), **context)


if __name__ == "__main__":
    main()
