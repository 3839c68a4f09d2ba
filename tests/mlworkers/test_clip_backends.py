"""CLIP-family scorers end to end on CPU: tiny random models written to disk, real WebP previews
read through `read_bytes` and torch's DataLoader, one result per image in request order."""
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlworkers.backends.base import Aspect, BackendError, ImageRef, ScoreRequest, backend_class, backend_names
from tests.mlworkers.tiny_models import (make_tiny_aesthetic_head, make_tiny_open_clip, make_tiny_pickscore,
                                         tiny_open_clip_config)

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["clipscore", "laion_aesthetic", "hpsv2", "pickscore"]
PROMPT_BACKENDS = ["clipscore", "hpsv2", "pickscore"]
DEFAULT_ASPECTS = {"clipscore": "prompt_following", "laion_aesthetic": "aesthetic", "hpsv2": "overall",
                   "pickscore": "overall"}
ASPECTS = [Aspect("prompt_following", "Prompt following"), Aspect("aesthetic", "Aesthetic"),
           Aspect("overall", "Overall")]


def webp_preview(seed: int, size=(448, 336)) -> bytes:
    """A 448 px WebP like import's previews, with content that differs from seed to seed."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(size[1] // 28, size[0] // 28, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=88, method=4)
    return out.getvalue()


@pytest.fixture(scope="module")
def previews() -> dict[str, bytes]:
    store = {f"previews/{i:02d}.webp": webp_preview(i) for i in range(8)}
    store["previews/corrupt.webp"] = webp_preview(99)[:60]  # truncated
    store["previews/text.webp"] = b"this is not an image"
    return store


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    open_clip_dir = make_tiny_open_clip(root / "tiny-open-clip")
    return {
        "open_clip": open_clip_dir,
        "head": make_tiny_aesthetic_head(root / "aesthetic-head.pth", in_dim=32),
        "pickscore": make_tiny_pickscore(root / "tiny-pickscore"),
        "root": root,
    }


def build(name, weights, read_bytes, **parameters):
    parameters.setdefault("num_workers", 0)
    if name == "laion_aesthetic":
        parameters.setdefault("head_path", str(weights["head"]))
    model_ref = weights["pickscore"] if name == "pickscore" else weights["open_clip"]
    return backend_class(name)(model_ref=str(model_ref), parameters=parameters, read_bytes=read_bytes)


@pytest.fixture(scope="module")
def backends(weights, previews):
    return {name: build(name, weights, previews.__getitem__, batch_size=3) for name in BACKENDS}


def refs(*indices, first_id=1):
    return [ImageRef(image_id=first_id + n, preview_key=f"previews/{i:02d}.webp" if isinstance(i, int) else i,
                     storage_key=f"images/{i}.png") for n, i in enumerate(indices)]


def two_prompts():
    return [ScoreRequest(prompt="three red circles on a blue background", images=refs(0, 1, 2, 3, first_id=10),
                         aspects=ASPECTS, scale=5),
            ScoreRequest(prompt="a cat wearing a hat", images=refs(4, 5, 6, first_id=20), aspects=ASPECTS, scale=5)]


def values(results):
    return [r.value for r in results]


# --- scoring -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BACKENDS)
def test_every_image_gets_one_finite_score_for_the_backends_aspect_in_request_order(name, backends):
    results = backends[name].score(two_prompts())

    assert [r.image_id for r in results] == [10, 11, 12, 13, 20, 21, 22]
    assert {r.aspect for r in results} == {DEFAULT_ASPECTS[name]}
    assert all(isinstance(r.value, float) and math.isfinite(r.value) and not r.error for r in results)
    assert len(set(values(results))) > 1  # the images differ, so do their scores


@pytest.mark.parametrize("name", BACKENDS)
def test_the_same_weights_give_the_same_scores(name, backends, weights, previews):
    again = build(name, weights, previews.__getitem__, batch_size=3)

    assert values(again.score(two_prompts())) == values(backends[name].score(two_prompts()))


@pytest.mark.parametrize("name", BACKENDS)
def test_an_image_scored_alone_scores_as_it_does_in_a_batch(name, backends):
    batched = backends[name].score(two_prompts())
    alone = [backends[name].score([ScoreRequest(prompt=request.prompt, images=[image], aspects=ASPECTS, scale=5)])[0]
             for request in two_prompts() for image in request.images]

    assert values(alone) == pytest.approx(values(batched), abs=1e-4)


def test_clipscore_is_two_and_a_half_times_the_positive_cosine(backends):
    import torch

    from mlworkers.pipeline import decode_rgb

    backend = backends["clipscore"]
    request = two_prompts()[0]
    with torch.inference_mode():
        text = backend.encode_texts([request.prompt])
        pixels = [backend.loaded.preprocess(decode_rgb(backend.read_bytes(image.preview_key)))  # open_clip's own
                  for image in request.images]
        cosine = (backend.encode_images(torch.stack(pixels)) * text).sum(-1)

    expected = (2.5 * cosine.clamp(min=0)).tolist()
    assert values(backend.score([request])) == pytest.approx(expected, abs=1e-5)


def test_normalising_on_the_device_gives_what_open_clips_transform_gives(backends, previews):
    import torch

    from mlworkers.pipeline import decode_rgb, split_normalisation

    transform = backends["clipscore"].loaded.preprocess
    in_workers, on_device = split_normalisation(transform)
    image = decode_rgb(previews["previews/03.webp"])

    assert in_workers(image).dtype == torch.uint8
    assert torch.allclose(on_device(in_workers(image)[None])[0], transform(image), atol=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
def test_an_unreadable_preview_fails_alone_with_its_reason(name, backends):
    images = refs(0, "previews/corrupt.webp", 1, "previews/text.webp", "previews/missing.webp", 2)
    results = backends[name].score([ScoreRequest(prompt="a red cube", images=images, aspects=ASPECTS, scale=5)])

    assert [r.image_id for r in results] == [1, 2, 3, 4, 5, 6]
    assert [r.failed for r in results] == [False, True, False, True, True, False]
    assert "previews/corrupt.webp" in results[1].error and "cannot decode" in results[1].error
    assert results[3].error == "cannot decode preview previews/text.webp: not an image Pillow can read"
    assert results[4].error.startswith("cannot read preview previews/missing.webp: KeyError")
    alone = backends[name].score([ScoreRequest(prompt="a red cube", images=refs(0, 1, 2), aspects=ASPECTS, scale=5)])
    assert [results[i].value for i in (0, 2, 5)] == pytest.approx(values(alone), abs=1e-4)


@pytest.mark.parametrize("name", PROMPT_BACKENDS)
def test_an_empty_prompt_fails_its_images_and_not_the_other_prompts(name, backends):
    results = backends[name].score([ScoreRequest(prompt="  ", images=refs(0, 1), aspects=ASPECTS, scale=5),
                                    ScoreRequest(prompt="a dog", images=refs(2, first_id=7), aspects=ASPECTS, scale=5)])

    assert [(r.image_id, r.error) for r in results[:2]] == [(1, "empty prompt"), (2, "empty prompt")]
    assert results[0].failed and results[1].failed and not results[2].failed


def test_the_aesthetic_predictor_reads_no_prompt_so_an_empty_one_is_scored(backends):
    with_prompt = backends["laion_aesthetic"].score([ScoreRequest(prompt="x", images=refs(0), aspects=ASPECTS, scale=5)])
    without = backends["laion_aesthetic"].score([ScoreRequest(prompt="", images=refs(0), aspects=ASPECTS, scale=5)])

    assert values(without) == values(with_prompt)


def test_the_aspect_parameter_names_where_the_value_is_stored(weights, previews):
    backend = build("clipscore", weights, previews.__getitem__, aspect="overall")

    assert [r.aspect for r in backend.score(two_prompts())] == ["overall"] * 7


def test_only_registered_names_are_listed_and_importing_the_family_loads_no_torch():
    assert set(BACKENDS) <= set(backend_names())
    code = ("import sys, mlworkers.backends.clip, mlworkers.pipeline, mlworkers.weights; "
            "print(sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- worker processes --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["clipscore", "pickscore"])
def test_dataloader_worker_processes_read_the_previews_and_agree_with_in_process_reading(name, weights, previews,
                                                                                         tmp_path):
    def read_bytes(key):
        (tmp_path / f"{os.getpid()}-{key.replace('/', '_')}").touch()
        return previews[key]

    requests = [ScoreRequest(prompt="three red circles", images=refs(0, 1, 2, "previews/text.webp", 3, 4, 5, 6, 7),
                             aspects=ASPECTS, scale=5)]
    in_process = build(name, weights, previews.__getitem__, batch_size=2).score(requests)
    in_workers = build(name, weights, read_bytes, batch_size=2, num_workers=2).score(requests)

    assert in_workers == in_process
    readers = {int(path.name.split("-")[0]) for path in tmp_path.iterdir()}
    assert len(readers) == 2 and os.getpid() not in readers


def _build_and_score_in_this_process(weights, previews, requests, queue):
    import torch

    # This test's parent already ran torch on OpenMP threads, which a forked child cannot use;
    # Celery's parent process never runs torch, so its task processes need no such care.
    torch.set_num_threads(1)
    try:
        backend = build("clipscore", weights, previews.__getitem__, batch_size=2, num_workers=2)
        queue.put(("ok", backend.score(requests)))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def test_worker_processes_start_inside_a_celery_prefork_child(weights, previews):
    import billiard

    requests = [ScoreRequest(prompt="a cube", images=refs(*range(6)), aspects=ASPECTS, scale=5)]
    queue = billiard.Queue()
    child = billiard.Process(target=_build_and_score_in_this_process, args=(weights, previews, requests, queue),
                             daemon=True)  # daemonic, as Celery's prefork pool makes its task processes
    child.start()
    try:
        outcome, results = queue.get(timeout=30)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()

    assert outcome == "ok", results
    expected = build("clipscore", weights, previews.__getitem__, batch_size=2).score(requests)
    assert values(results) == pytest.approx(values(expected), abs=1e-5)  # one torch thread there, two here


def test_workers_read_django_s3_storage_through_their_own_storage_instances(s3_settings, weights, previews,
                                                                             tmp_path):
    from django.core.files.storage import default_storage

    s3_settings.settings.STORAGES = {**s3_settings.settings.STORAGES,
                                     "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    for key, data in previews.items():
        s3_settings.client.put_object(Bucket=s3_settings.bucket, Key=key, Body=data)

    def read_storage_bytes(key):  # what the job runner passes
        with default_storage.open(key, "rb") as handle:
            return handle.read()

    read_storage_bytes("previews/00.webp")  # the parent holds a connection when the workers fork
    parents_storage = default_storage._wrapped

    def read_and_note_storage(key):
        data = read_storage_bytes(key)
        shared = default_storage._wrapped is parents_storage  # the object the parent made, inherited by fork
        (tmp_path / f"{os.getpid()}-{'shared' if shared else 'own'}").touch()
        return data

    requests = [ScoreRequest(prompt="a cube", images=refs(*range(8)), aspects=ASPECTS, scale=5)]
    expected = build("clipscore", weights, previews.__getitem__, batch_size=2).score(requests)
    results = build("clipscore", weights, read_and_note_storage, batch_size=2, num_workers=2).score(requests)

    assert results == expected and not any(r.failed for r in results)
    assert sorted(path.name.split("-")[1] for path in tmp_path.iterdir()) == ["own", "own"]
    assert read_storage_bytes("previews/01.webp") == previews["previews/01.webp"]  # the parent's is untouched


# --- weights -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BACKENDS)
def test_missing_weights_are_refused_by_path(name, weights, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(BackendError, match=f"^weights not found: {re.escape(str(missing))}$"):
        backend_class(name)(model_ref=str(missing), parameters={"head_path": str(weights["head"])})


def test_a_folder_without_a_checkpoint_is_refused(weights, tmp_path):
    folder = tmp_path / "config-only"
    folder.mkdir()
    shutil.copy(weights["open_clip"] / "open_clip_config.json", folder)

    with pytest.raises(BackendError, match="weights not found: no open_clip_model.safetensors or .* in "):
        backend_class("clipscore")(model_ref=str(folder))


def test_a_checkpoint_of_another_shape_is_refused_with_the_first_mismatch(weights, tmp_path):
    narrow = make_tiny_open_clip(tmp_path / "narrow", embed_dim=16)
    folder = tmp_path / "mismatched"
    folder.mkdir()
    shutil.copy(narrow / "open_clip_model.safetensors", folder)
    (folder / "open_clip_config.json").write_text(json.dumps(tiny_open_clip_config(embed_dim=32)))

    with pytest.raises(BackendError, match=r"checkpoint does not fit the model of .*open_clip_config.json: "
                                           r"size mismatch for text_projection"):
        backend_class("hpsv2")(model_ref=str(folder))


def test_a_pickscore_checkpoint_of_another_shape_is_refused_with_the_first_mismatch(weights, tmp_path):
    folder = tmp_path / "pick"
    shutil.copytree(weights["pickscore"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["projection_dim"] = 8
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(BackendError, match=r"checkpoint does not fit CLIPModel: \w+_projection.weight is \[16, 32\] "
                                           r"in the checkpoint but \[8, 32\] in the model"):
        backend_class("pickscore")(model_ref=str(folder))


def test_an_aesthetic_head_of_another_width_is_refused_naming_both_widths(weights, tmp_path):
    head = make_tiny_aesthetic_head(tmp_path / "head-768.pth", in_dim=768)

    with pytest.raises(BackendError, match="takes 768-wide embeddings but the image tower gives 32-wide ones"):
        backend_class("laion_aesthetic")(model_ref=str(weights["open_clip"]), parameters={"head_path": str(head)})
    with pytest.raises(BackendError, match="needs the parameter head_path"):
        backend_class("laion_aesthetic")(model_ref=str(weights["open_clip"]))


def test_a_built_in_architecture_name_takes_a_checkpoint_file(weights, previews, tmp_path):
    import open_clip

    config = tmp_path / "tiny-builtin-arch.json"
    config.write_text(json.dumps(tiny_open_clip_config()))
    open_clip.add_model_config(config)  # stands in for "ViT-L-14", too big for a test
    checkpoint = weights["open_clip"] / "open_clip_model.safetensors"
    by_name = backend_class("clipscore")(model_ref=str(checkpoint), read_bytes=previews.__getitem__,
                                         parameters={"model_name": "tiny-builtin-arch", "num_workers": 0})

    assert values(by_name.score(two_prompts())) == values(build("clipscore", weights, previews.__getitem__)
                                                          .score(two_prompts()))
    with pytest.raises(BackendError, match="unknown open_clip architecture 'ViT-Nope-99'"):
        backend_class("clipscore")(model_ref=str(checkpoint), parameters={"model_name": "ViT-Nope-99"})


def test_a_config_in_open_clips_hub_layout_brings_its_preprocessing(weights, previews, tmp_path):
    folder = tmp_path / "hub-layout"
    shutil.copytree(weights["open_clip"], folder)
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": tiny_open_clip_config(), "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}))

    backend = build("clipscore", {**weights, "open_clip": folder}, previews.__getitem__)

    assert (backend.on_device.mean, backend.on_device.std) == ((0.5,) * 3, (0.25,) * 3)
    assert all(r.value is not None for r in backend.score(two_prompts()))


def test_s3_weights_are_downloaded_once_into_the_model_cache(s3_settings, weights, previews, tmp_path):
    from mlworkers.weights import local_path

    s3_settings.settings.MODEL_CACHE_DIR = str(tmp_path / "models")
    client, bucket = s3_settings.client, s3_settings.bucket
    for file in weights["open_clip"].iterdir():
        client.upload_file(str(file), bucket, f"models/tiny-clip/{file.name}")
    client.upload_file(str(weights["head"]), bucket, "heads/aesthetic.pth")
    parameters = {"head_path": f"s3://{bucket}/heads/aesthetic.pth", "num_workers": 0}

    from_s3 = backend_class("laion_aesthetic")(model_ref=f"s3://{bucket}/models/tiny-clip/", parameters=parameters,
                                               read_bytes=previews.__getitem__)

    assert values(from_s3.score(two_prompts())) == values(build("laion_aesthetic", weights, previews.__getitem__)
                                                          .score(two_prompts()))
    cached = local_path(f"s3://{bucket}/models/tiny-clip/")
    assert cached.parent == tmp_path / "models" and (cached / "open_clip_model.safetensors").is_file()
    assert local_path(f"s3://{bucket}/heads/aesthetic.pth").name == "aesthetic.pth"
    assert (local_path(f"s3://{bucket}/models/tiny-clip") / "open_clip_config.json").is_file()  # slash optional
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]  # no staging left
    client.delete_object(Bucket=bucket, Key="models/tiny-clip/open_clip_model.safetensors")
    assert local_path(f"s3://{bucket}/models/tiny-clip/") == cached  # read from the cache, not S3
    with pytest.raises(BackendError, match=f"^weights not found: s3://{bucket}/models/nothing-here$"):
        local_path(f"s3://{bucket}/models/nothing-here")


def test_devices_and_precisions_on_this_machine():
    import torch

    from mlworkers.weights import autocast_dtype, local_path, pick_device

    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert autocast_dtype("cpu") == torch.float32
    assert local_path(str(ROOT / "README.md")) == ROOT / "README.md"


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 0), (3, 1), (8, 6), (14, 12), (64, 12)])
def test_dataloader_workers_are_the_cores_the_worker_may_use_less_two_up_to_twelve(monkeypatch, cores, workers):
    import os

    from mlworkers import pipeline

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert pipeline.default_num_workers() == workers
