import io
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from annotation.image_sources import SourcePolicy
from annotation.importing import iter_numbered_lines, manifest_import, manifest_line_count
from annotation.models import Comparison, Image, Prompt
from tests.conftest import image_bytes, write_manifest

pytestmark = pytest.mark.django_db


def run_import(project, lines, root, **kwargs):
    policy = SourcePolicy.from_settings(images_root=root)
    return manifest_import(project=project, lines=[l if isinstance(l, str) else __import__("json").dumps(l) for l in lines],
                           policy=policy, **kwargs)


def four_images(prompt="two cats on a sofa", **extra):
    return [{"prompt": prompt, "image": f"{name}.png", "generator": "sdxl", "seed": i, **extra}
            for i, name in enumerate("abcd")]


def huge_png_header_only(width, height) -> bytes:
    """A valid PNG header claiming width x height, with one tiny compressed row: what a
    decompression bomb looks like to a reader that trusts the header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b"")


def test_import_creates_prompt_images_all_pairs_and_previews(project, images_dir):
    summary = run_import(project, four_images(category="animals", meta={"batch": 1}), images_dir)

    assert (summary.images_created, summary.prompts_created, summary.comparisons_created, summary.rejected) == (4, 1, 6, 0)
    prompt = Prompt.objects.get(project=project)
    assert prompt.category == "animals"
    images = list(Image.objects.filter(prompt=prompt))
    assert {i.seed for i in images} == {0, 1, 2, 3}
    assert all(i.generator == "sdxl" and i.meta == {"batch": 1} and (i.width, i.height) == (640, 480) for i in images)
    for image in images:
        assert default_storage.exists(image.storage_key)
        with default_storage.open(image.preview_key) as preview:
            rendition = PILImage.open(preview)
            assert max(rendition.size) == 448 and rendition.format == "WEBP"
    pairs = set(Comparison.objects.values_list("image_a_id", "image_b_id"))
    assert len(pairs) == 6 and all(a < b for a, b in pairs)


def test_rerunning_the_same_manifest_adds_nothing(project, images_dir):
    run_import(project, four_images(), images_dir)
    again = run_import(project, four_images(), images_dir)

    assert (again.images_created, again.prompts_created, again.comparisons_created, again.duplicates) == (0, 0, 0, 4)
    assert (Prompt.objects.count(), Image.objects.count(), Comparison.objects.count()) == (1, 4, 6)


def test_images_added_later_are_paired_with_the_prompts_existing_images(project, images_dir):
    run_import(project, four_images()[:2], images_dir)
    later = run_import(project, four_images()[2:], images_dir)

    assert later.comparisons_created == 5
    assert Comparison.objects.count() == 6


def test_max_pairs_per_prompt_caps_comparisons_deterministically(project, images_dir):
    run_import(project, four_images(), images_dir, max_pairs_per_prompt=3)
    first = set(Comparison.objects.values_list("image_a_id", "image_b_id"))
    again = run_import(project, four_images(), images_dir, max_pairs_per_prompt=3)

    assert len(first) == 3 and again.comparisons_created == 0
    covered = {i for pair in first for i in pair}
    assert len(covered) >= 3


def test_identical_bytes_are_stored_once_across_prompts(project, images_dir):
    summary = run_import(project, [{"prompt": "one", "image": "a.png"}, {"prompt": "two", "image": "a.png"}], images_dir)

    assert summary.images_created == 2
    keys = set(Image.objects.values_list("storage_key", flat=True))
    assert len(keys) == 1


def test_duplicate_image_for_the_same_prompt_is_counted_not_imported(project, images_dir):
    summary = run_import(project, [{"prompt": "p", "image": "a.png"}, {"prompt": "p", "image": "./a.png"}], images_dir)

    assert (summary.images_created, summary.duplicates) == (1, 1)


@pytest.mark.parametrize(
    ("bad_line", "field", "reason"),
    [
        ('{"prompt": "x", "image": ', "", "not valid JSON"),
        ('["prompt", "image"]', "", "must be a JSON object"),
        ({"image": "a.png"}, "prompt", "required"),
        ({"prompt": "   ", "image": "a.png"}, "prompt", "required"),
        ({"prompt": "x" * 100_000, "image": "a.png"}, "prompt", "100000 characters, over the 4000-character limit"),
        ({"prompt": "x"}, "image", "required"),
        ({"prompt": "x", "image": "a.png", "seed": "42"}, "seed", "integer"),
        ({"prompt": "x", "image": "a.png", "seed": 2**70}, "seed", "64 bits"),
        ({"prompt": "x", "image": "a.png", "meta": [1]}, "meta", "JSON object"),
        ({"prompt": "x", "image": "a.png", "promt": "typo"}, "promt", "unknown field"),
        ({"prompt": "x", "image": "missing.png"}, "image", "file not found: missing.png"),
        ({"prompt": "x", "image": "../secret.png"}, "image", "outside the images root"),
        ({"prompt": "x", "image": "sub/../../secret.png"}, "image", "outside the images root"),
        ({"prompt": "x", "image": "ftp://example.org/a.png"}, "image", "unsupported scheme"),
        ({"prompt": "x", "image": "http://127.0.0.1:9/a.png"}, "image", "loopback address 127.0.0.1"),
        ({"prompt": "x", "image": "http://169.254.169.254/latest/meta-data/"}, "image", "link-local address"),
        ({"prompt": "x", "image": "http://10.1.2.3/a.png"}, "image", "private address"),
        ({"prompt": "x", "image": "http://[::1]/a.png"}, "image", "loopback address"),
        ({"prompt": "x", "image": "s3://bucket-only"}, "image", "malformed S3 reference"),
        # what PostgreSQL cannot store (NUL) or UTF-8 cannot encode (an unpaired surrogate, which
        # JSON writes as the escape \ud800) is refused on its line, not in its chunk's transaction
        ({"prompt": "a cat\u0000", "image": "a.png"}, "prompt", "prompt contains a NUL character"),
        ('{"prompt": "a \\ud800 cat", "image": "a.png"}', "prompt", "prompt contains an unpaired surrogate \\ud800"),
        ({"prompt": "x", "image": "a.png", "meta": {"note": "x\ud800"}}, "meta",
         "meta.note contains an unpaired surrogate \\ud800"),
        ({"prompt": "x", "image": "a.png", "meta": {"tags": [{"k": "\u0000"}]}}, "meta",
         "meta.tags[0].k contains a NUL character"),
        ({"prompt": "x", "image": "a.png", "meta": {"k\u0000": 1}}, "meta",
         "meta has a key 'k\\u0000' that contains a NUL character"),
        ({"prompt": "x", "image": "a\u0000.png"}, "image", "image contains a NUL character"),
        ({"prompt": "x", "image": "a.png", "generator": "\udfff"}, "generator", "unpaired surrogate \\udfff"),
        ({"prompt": "x", "image": "a.png", "prom\u0000pt": "x"}, "", "field name 'prom\\u0000pt' contains a NUL"),
        ('{"prompt": "x", "image": "a.png", "meta": {"score": NaN}}', "", "NaN is not a JSON number"),
        ('{"prompt": "x", "image": "a.png", "meta": {"score": 1e999}}', "", "1e999 is out of range"),
        ('{"prompt": "x", "image": "a.png", "seed": ' + "9" * 5000 + "}", "", "not valid JSON"),
        ('{"prompt": "x", "image": "a.png", "meta": ' + "[" * 100_000 + "}", "", "not valid JSON"),
    ],
)
def test_bad_line_is_rejected_with_its_reason_and_good_neighbours_are_imported(project, images_dir, bad_line, field, reason):
    (images_dir.parent / "secret.png").write_bytes(image_bytes())
    lines = [{"prompt": "good", "image": "a.png"}, bad_line, {"prompt": "good", "image": "b.png"}]

    summary = run_import(project, lines, images_dir)

    assert summary.images_created == 2
    assert len(summary.errors) == 1
    error = summary.errors[0]
    assert error.line == 2 and error.field == field and reason in error.message
    assert Image.objects.count() == 2 and Prompt.objects.count() == 1


@pytest.mark.parametrize(
    ("filename", "content", "reason"),
    [
        ("notes.png", b"these are just words, not pixels\n", "not an image"),
        ("truncated.png", image_bytes(size=(300, 300), fmt="PNG")[:400], "truncated or corrupt"),
        ("corrupt.jpg", image_bytes(size=(300, 300), fmt="JPEG")[:200] + b"\0" * 50, "truncated or corrupt"),
        ("huge.png", huge_png_header_only(20000, 20000), "decompression bomb: Image size (400000000 pixels) exceeds"),
    ],
)
def test_broken_image_file_is_rejected_and_nothing_is_stored_for_it(project, images_dir, filename, content, reason):
    (images_dir / filename).write_bytes(content)

    summary = run_import(project, [{"prompt": "p", "image": filename}, {"prompt": "p", "image": "a.png"}], images_dir)

    assert [(e.line, e.field) for e in summary.errors] == [(1, "image")]
    assert reason in summary.errors[0].message
    assert summary.images_created == 1
    _, files = default_storage.listdir("images/" + Image.objects.get().sha256[:2])
    assert len(files) == 1


def test_image_over_the_configured_pixel_limit_is_refused_before_decoding(project, images_dir, settings):
    settings.IMPORT_MAX_PIXELS = 100_000
    (images_dir / "big.png").write_bytes(huge_png_header_only(1000, 1000))

    summary = run_import(project, [{"prompt": "p", "image": "big.png"}], images_dir)

    assert "image is 1000x1000 = 1000000 pixels, over the 100000-pixel limit" in summary.errors[0].message
    assert Image.objects.count() == 0


def test_absolute_path_outside_an_explicit_root_is_refused(project, images_dir, tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(image_bytes())

    summary = run_import(project, [{"prompt": "p", "image": str(outside)}], images_dir)

    assert "outside the images root" in summary.errors[0].message


def test_symlink_leaving_the_root_is_refused(project, images_dir, tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(image_bytes())
    (images_dir / "link.png").symlink_to(outside)

    summary = run_import(project, [{"prompt": "p", "image": "link.png"}], images_dir)

    assert "outside the images root" in summary.errors[0].message


def test_url_images_import_when_private_addresses_are_allowed(project, images_dir, http_server, settings):
    settings.IMPORT_ALLOW_PRIVATE_URLS = True
    http_server.routes["/gen/1.jpg"] = (200, {"Content-Type": "image/jpeg"}, image_bytes(fmt="JPEG"))
    http_server.routes["/moved"] = (302, {"Location": "/gen/1.jpg"}, b"")
    http_server.routes["/gone"] = (410, {}, b"")

    summary = run_import(project, [
        {"prompt": "p", "image": f"{http_server.base_url}/gen/1.jpg"},
        {"prompt": "q", "image": f"{http_server.base_url}/moved"},
        {"prompt": "p", "image": f"{http_server.base_url}/gone"},
    ], images_dir)

    assert summary.images_created == 2
    assert [(e.line, "HTTP 410" in e.message) for e in summary.errors] == [(3, True)]
    assert set(Image.objects.values_list("format", flat=True)) == {"JPEG"}


def test_url_over_the_size_limit_is_refused(project, images_dir, http_server, settings):
    settings.IMPORT_ALLOW_PRIVATE_URLS = True
    settings.IMPORT_MAX_BYTES = 1000
    http_server.routes["/big.png"] = (200, {}, image_bytes(size=(400, 400)) + b"\0" * 2000)

    summary = run_import(project, [{"prompt": "p", "image": f"{http_server.base_url}/big.png"}], images_dir)

    assert "over the 1000-byte limit" in summary.errors[0].message


def test_a_failed_write_leaves_nothing_of_its_chunk(project, images_dir, monkeypatch):
    import annotation.importing as importing

    def insert_failing(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(importing, "insert_rows", insert_failing)  # after the prompts are written
    with pytest.raises(RuntimeError):
        run_import(project, four_images(), images_dir)

    assert (Prompt.objects.count(), Image.objects.count(), Comparison.objects.count()) == (0, 0, 0)


def test_command_prints_summary_with_rejected_lines(project, images_dir, capsys):
    manifest = write_manifest(images_dir / "manifest.jsonl",
                              four_images() + ["not json", {"prompt": "p", "image": "../x.png"}])

    call_command("import_items", "cats", str(manifest), "--images-root", str(images_dir))

    out = capsys.readouterr()
    assert "6 lines: 4 images imported, 0 duplicates, 2 rejected; 1 new prompts, 6 new comparisons; 6 work units opened." in out.out
    assert "rejected line 5: not valid JSON" in out.out
    assert "rejected line 6 [image]: path '../x.png' is outside the images root" in out.out
    assert "import" in out.err  # the progress bar


def test_command_reads_relative_paths_from_the_manifest_folder_by_default(project, images_dir):
    manifest = write_manifest(images_dir / "manifest.jsonl", four_images())

    call_command("import_items", "cats", str(manifest), "--no-progress")

    assert Image.objects.count() == 4


def test_command_refuses_an_unknown_project(project, images_dir):
    manifest = write_manifest(images_dir / "manifest.jsonl", four_images())

    with pytest.raises(CommandError, match="Unknown project 'dogs' \\(projects: cats\\)"):
        call_command("import_items", "dogs", str(manifest))


def test_command_refuses_a_missing_manifest(project, tmp_path):
    with pytest.raises(CommandError, match="Manifest not found"):
        call_command("import_items", "cats", str(tmp_path / "nope.jsonl"))


# --- bytes that are not UTF-8 --------------------------------------------------------------

def test_a_line_that_is_not_utf8_is_refused_naming_the_offset_of_its_first_bad_byte(project, images_dir):
    first = b'{"prompt": "good", "image": "a.png"}\n'
    latin1 = '{"prompt": "caf\u00e9 au lait", "image": "b.png"}\n'.encode("latin-1")  # 0xe9 at offset 15
    lines = [first, b"\n", latin1, b'{"prompt": "good", "image": "c.png"}\n']

    summary = manifest_import(project=project, lines=lines, policy=SourcePolicy.from_settings(images_root=images_dir))

    [error] = summary.errors
    assert (error.line, error.field) == (3, "")
    assert error.message == ("not valid UTF-8: byte 0xe9 at offset 15 of the line, byte "
                             f"{len(first) + 1 + 15} of the file (offsets count bytes from 0)")
    assert summary.images_created == 2
    assert list(Prompt.objects.values_list("text", flat=True)) == ["good"]  # nothing stored with U+FFFD


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1 << 20])
def test_line_count_of_a_manifest_read_in_chunks_matches_the_lines_an_import_reads(chunk_size):
    data = b'{"a": 1}\n\n  \t\r\n{"b": 2}\r\n\xff\xfe\n   x\n\n{"c": 3}'

    counted = manifest_line_count(io.BytesIO(data), chunk_size=chunk_size)

    assert counted == len(list(iter_numbered_lines(io.BytesIO(data)))) == 5


# --- image URLs that drip -------------------------------------------------------------------

@pytest.fixture
def drip_server():
    """A loopback server that sends its answer one byte every 50 ms: `/headers` drips its status
    line and headers, `/body` its body (a PNG announced in full by Content-Length). It sends at
    most 100 bytes (5 s), then closes, and stops sending once the client has gone."""
    body = image_bytes(size=(8, 8))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            dripped, at_once = (head + body, b"") if self.path == "/headers" else (body, head)
            try:
                self.wfile.write(at_once)
                self.wfile.flush()
                for byte in dripped[:100]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:  # the client gave up
                pass
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("dripping", ["headers", "body"])
def test_an_image_url_that_drips_fails_at_the_overall_deadline(project, images_dir, drip_server, settings, dripping):
    settings.IMPORT_ALLOW_PRIVATE_URLS = True
    settings.IMPORT_URL_TIMEOUT_S = 2  # never reached by one read: a byte comes every 50 ms
    settings.IMPORT_URL_DEADLINE_S = 0.5
    url = f"{drip_server}/{dripping}"
    started = time.monotonic()

    summary = run_import(project, [{"prompt": "p", "image": url}, {"prompt": "p", "image": "a.png"}], images_dir)

    assert time.monotonic() - started < 4  # cut at the deadline, not when the server stops dripping (5 s)
    [error] = summary.errors
    assert (error.line, error.field) == (1, "image")
    assert error.message == f"fetching {url} took longer than 0.5 s (IMPORT_URL_DEADLINE_S)"
    assert summary.images_created == 1
