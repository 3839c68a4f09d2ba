"""Machine annotators naming models on the Hugging Face Hub, against a loopback Hub (hub_server.py)
that HF_ENDPOINT points at, serving tiny models built here: download and cache, pinned commits in
the version, offline mode, tokens, missing repos, unreachable Hubs and interrupted downloads."""
import hashlib
import json
import logging
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from annotation.models import AspectScore
from mlworkers import hub, runner, services
from mlworkers.api import MachineAnnotatorSerializer
from mlworkers.backends.base import BackendError, backend_class
from mlworkers.models import AutoAnnotationJob
from mlworkers.weights import local_path
from tests.conftest import free_port, wait_for
from tests.mlworkers.conftest import HUB_TOKEN
from tests.mlworkers.test_clip_backends import two_prompts, values, webp_preview
from tests.mlworkers.tiny_models import make_tiny_open_clip, make_tiny_pickscore

PREVIEWS = {f"previews/{i:02d}.webp": webp_preview(i) for i in range(7)}
OPEN_CLIP_FILES = {"open_clip_config.json", "open_clip_model.safetensors"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-models")
    return SimpleNamespace(clip=make_tiny_open_clip(root / "clip"),
                           clip_v2=make_tiny_open_clip(root / "clip-v2", seed=1),
                           pickscore=make_tiny_pickscore(root / "pickscore"))


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch):
    """Each test builds its backends anew (a worker keeps them per process)."""
    monkeypatch.setattr(services, "_BACKENDS", {})


def clip_repo(folder: Path) -> dict[str, bytes]:
    """An open_clip repo as the Hub holds them: its two files, plus files open_clip does not need."""
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    return {**files, "README.md": b"# tiny clip", "pytorch_model.bin": b"transformers weights open_clip never reads"}


def fetched(server) -> set[str]:
    """The repo files whose content was asked for (a resolve, or the CDN for weights)."""
    return {r.path.rpartition("/")[2] for r in server.requests_to("hub") if "/resolve/" in r.path}


def clip_scores(model_ref: str, **parameters):
    backend = backend_class("clipscore")(model_ref=model_ref, parameters={"num_workers": 0, **parameters},
                                         read_bytes=PREVIEWS.__getitem__)
    return values(backend.score(two_prompts()))


def built(annotator):
    """The backend a worker builds for `annotator`, reading the test's previews."""
    backend = services.backend_for(annotator)
    backend.read_bytes = PREVIEWS.__getitem__
    return backend


# --- download and cache --------------------------------------------------------------------------

def test_a_hub_model_is_downloaded_once_into_the_model_cache_and_then_read_without_asking(hub_server, tiny, settings):
    sha = hub_server.add_commit("laion/tiny-clip", clip_repo(tiny.clip))

    path = local_path("hf-hub:laion/tiny-clip", hub_files="open_clip")

    cache = Path(settings.MODEL_CACHE_DIR).resolve()
    assert path == cache / "models--laion--tiny-clip" / "snapshots" / sha
    assert {p.name for p in path.iterdir()} == OPEN_CLIP_FILES == fetched(hub_server)  # not README, not .bin
    assert all((path / name).read_bytes() == (tiny.clip / name).read_bytes() for name in OPEN_CLIP_FILES)
    asked = len(hub_server.requests)
    assert local_path(f"hf://laion/tiny-clip@{sha}", hub_files="open_clip") == path
    assert len(hub_server.requests) == asked  # pinned to a commit: not a single request
    assert local_path("hf-hub:laion/tiny-clip", hub_files="open_clip") == path
    assert [r.path for r in hub_server.requests[asked:]] == ["/api/models/laion/tiny-clip"]  # which commit is main?
    assert clip_scores("hf-hub:laion/tiny-clip") == clip_scores(str(tiny.clip))


def test_weights_go_to_the_cdn_without_the_token_and_every_file_is_fetched_once(hub_server, tiny, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    hub_server.add_commit("laion/private-clip", clip_repo(tiny.clip), private=True)

    local_path("hf://laion/private-clip", hub_files="open_clip")

    cdn = hub_server.requests_to("cdn")
    assert [r.method for r in cdn] == ["GET"] and cdn[0].authorization is None  # a signed URL on another origin
    assert all(r.authorization == f"Bearer {HUB_TOKEN}" for r in hub_server.requests_to("hub"))
    contents = [r.path for r in hub_server.requests if r.method == "GET" and "/api/" not in r.path]
    assert len(contents) == len(set(contents)) == 2  # the config from the Hub, the weights from the CDN


# --- pinned commits and the version --------------------------------------------------------------

def test_the_commit_a_reference_names_is_in_the_version_and_a_moved_branch_changes_nothing_until_refreshed(
        hub_server, tiny, db):
    first = hub_server.add_commit("org/clip", clip_repo(tiny.clip))
    pinned_ref = f"hf://org/clip@{first}"
    pinned = services.machine_annotator_create(name="pinned", backend="clipscore", model_ref=pinned_ref,
                                               parameters={"num_workers": 0})
    following = services.machine_annotator_create(name="following", backend="clipscore", model_ref="hf://org/clip",
                                                  parameters={"num_workers": 0})

    assert pinned.model_commits == {pinned_ref: first} and following.model_commits == {"hf://org/clip": first}
    assert pinned.version == services.machine_annotator_version(
        backend="clipscore", model_ref=pinned_ref, parameters={"num_workers": 0}, prompt_template="",
        model_commits={pinned_ref: first})
    assert pinned.version != services.machine_annotator_version(
        backend="clipscore", model_ref=pinned_ref, parameters={"num_workers": 0}, prompt_template="")

    saved_version = following.version
    second = hub_server.add_commit("org/clip", clip_repo(tiny.clip_v2))  # main moves
    same = services.machine_annotator_update(annotator=following, is_active=True)
    judged = values(built(same).score(two_prompts()))

    assert same.model_commits == {"hf://org/clip": first} and same.version == saved_version
    assert judged == clip_scores(str(tiny.clip)) != clip_scores(str(tiny.clip_v2))  # the saved commit's weights
    moved = services.machine_annotator_update(annotator=same, refresh_revisions=True)
    assert moved.model_commits == {"hf://org/clip": second} and moved.version != saved_version
    assert values(built(moved).score(two_prompts())) == clip_scores(str(tiny.clip_v2))


# --- offline -------------------------------------------------------------------------------------

def test_offline_with_a_warm_cache_loads_from_the_cache_without_a_request(hub_server, tiny, monkeypatch, db):
    sha = hub_server.add_commit("yuvalkirstain/tiny-pickscore", tiny.pickscore)
    judge = services.machine_annotator_create(name="pick", backend="pickscore",
                                              model_ref="yuvalkirstain/tiny-pickscore", parameters={"num_workers": 0})
    expected = values(built(judge).score(two_prompts()))
    asked = len(hub_server.requests)
    monkeypatch.setattr(services, "_BACKENDS", {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    again = built(judge)
    pinned_offline = services.machine_annotator_create(
        name="pinned offline", backend="pickscore", model_ref=f"hf://yuvalkirstain/tiny-pickscore@{sha}")

    assert judge.model_commits == {"yuvalkirstain/tiny-pickscore": sha}
    assert values(again.score(two_prompts())) == expected
    assert pinned_offline.model_commits == {f"hf://yuvalkirstain/tiny-pickscore@{sha}": sha}  # a sha needs no Hub
    assert len(hub_server.requests) == asked


def test_offline_with_a_cold_cache_is_refused_naming_the_reference(hub_server, tiny, monkeypatch):
    sha = hub_server.add_commit("org/clip", clip_repo(tiny.clip))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    for ref in (f"hf://org/clip@{sha}", "hf-hub:org/clip"):
        with pytest.raises(hub.HubOffline, match=f"^HF_HUB_OFFLINE is set and {ref} is not in the cache$"):
            local_path(ref, hub_files="open_clip")
    assert hub_server.requests == []


# --- refusals: tokens, missing repos, unreachable Hubs ---------------------------------------------

def test_a_private_repo_needs_the_token_which_never_shows_in_a_message_a_log_or_a_result(
        hub_server, tiny, monkeypatch, caplog, db):
    caplog.set_level(logging.DEBUG)
    hub_server.add_commit("org/private-clip", clip_repo(tiny.clip), private=True)
    create = dict(backend="clipscore", model_ref="hf://org/private-clip", parameters={"num_workers": 0})

    with pytest.raises(ValidationError) as anonymous:
        services.machine_annotator_create(name="anonymous", **create)
    monkeypatch.setenv("HF_TOKEN", "hf_wrongTokenThatMustNotShow")
    with pytest.raises(ValidationError) as wrong:
        services.machine_annotator_create(name="wrong", **create)
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    judge = services.machine_annotator_create(name="with token", **create)
    backend = built(judge)

    for refused in (anonymous, wrong):
        assert refused.value.message_dict["model_ref"] == [
            "hf://org/private-clip needs a token (HF_TOKEN) or the token has no access: the model hub answered 401"]
    shown = [str(anonymous.value), str(wrong.value), json.dumps(MachineAnnotatorSerializer(judge).data), caplog.text,
             repr(backend), json.dumps([r.__dict__ for r in backend.score(two_prompts())])]
    assert not [text for text in shown if HUB_TOKEN in text or "hf_wrongTokenThatMustNotShow" in text]
    assert judge.model_commits  # resolved with the token


@pytest.mark.parametrize("ref", ["hf://org/no-such-repo", "hf://org/clip@no-such-branch",
                                 "hf://org/clip@0123456789abcdef0123456789abcdef01234567"])
def test_a_repo_or_revision_the_hub_lacks_is_refused_when_saved(hub_server, tiny, db, ref):
    hub_server.add_commit("org/clip", clip_repo(tiny.clip))

    with pytest.raises(ValidationError) as refused:
        services.machine_annotator_create(name="missing", backend="clipscore", model_ref=ref)

    assert refused.value.message_dict == {"model_ref": [f"no such model repo or revision on the hub: {ref}"]}


def test_a_file_the_repo_lacks_is_refused_when_loaded(hub_server, tiny):
    sha = hub_server.add_commit("org/heads", {"head.pth": b"weights"})

    with pytest.raises(BackendError, match=r"hf://org/heads/other.pth: nothing to load at 'other.pth' in org/heads@"):
        local_path("hf://org/heads/other.pth", hub_files="file")
    assert local_path("hf://org/heads/head.pth", hub_files="file").read_bytes() == b"weights"
    assert local_path(f"hf://org/heads@{sha}/head.pth", hub_files="file").name == "head.pth"


def test_an_unreachable_hub_fails_fast_saying_so(monkeypatch, settings, tmp_path, db):
    settings.MODEL_CACHE_DIR = str(tmp_path / "cache")
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.monotonic()

    with pytest.raises(hub.HubUnreachable, match=f"^model hub unreachable: {closed}: ConnectError: "):
        local_path("hf://org/clip", hub_files="open_clip")
    judge = services.machine_annotator_create(name="later", backend="pickscore", model_ref="org/tiny-pickscore")

    assert time.monotonic() - started < 5
    assert judge.model_commits == {} and services.machine_annotator_unresolved(judge) == ["org/tiny-pickscore"]


def test_a_hub_that_accepts_and_never_answers_times_out_saying_so(monkeypatch, settings, tmp_path):
    settings.MODEL_CACHE_DIR = str(tmp_path / "cache")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections wait in the backlog: connected, never answered
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(hub, "HUB_TIMEOUT_S", 0.5)
        started = time.monotonic()

        with pytest.raises(hub.HubUnreachable, match=f"^model hub unreachable: {endpoint}: ReadTimeout"):
            local_path("hf://org/clip", hub_files="open_clip")

    assert time.monotonic() - started < 5


# --- an interrupted download ---------------------------------------------------------------------

def test_an_interrupted_download_leaves_nothing_taken_for_complete_and_a_retry_downloads_it_whole(
        hub_server, tiny, monkeypatch, settings):
    files = clip_repo(tiny.clip)
    sha = hub_server.add_commit("org/clip", files)
    weights = files["open_clip_model.safetensors"]
    hub_server.interrupt(weights)  # the connection closes half way through, then the CDN is down
    ref = f"hf://org/clip@{sha}"

    with pytest.raises(hub.HubUnreachable, match="model hub unreachable: .*503"):
        local_path(ref, hub_files="open_clip")

    cache = Path(settings.MODEL_CACHE_DIR)
    blob = hashlib.sha256(weights).hexdigest()
    assert not [p for p in cache.rglob("*") if p.name.startswith(blob) and p.suffix != ".lock"]  # not even partial
    assert not list((cache / "hub-downloads").rglob("*.json"))  # no record of a complete download
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubOffline, match="is not in the cache"):
        local_path(ref, hub_files="open_clip")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub_server.restore()
    path = local_path(ref, hub_files="open_clip")
    assert (path / "open_clip_model.safetensors").read_bytes() == weights
    assert clip_scores(ref) == clip_scores(str(tiny.clip))


# --- jobs ----------------------------------------------------------------------------------------

def run_job(job) -> AutoAnnotationJob:
    for chunk in runner.auto_job_start(job_id=job.pk, send=False):
        runner.auto_job_run_chunk(chunk_id=chunk)
    job.refresh_from_db()
    return job


def test_a_reference_saved_while_the_hub_was_unreachable_is_resolved_when_its_job_starts(
        hub_server, tiny, imported, monkeypatch):
    sha = hub_server.add_commit("org/tiny-pickscore", tiny.pickscore)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    judge = services.machine_annotator_create(name="pick", backend="pickscore", model_ref="org/tiny-pickscore",
                                              parameters={"num_workers": 0})
    unresolved_version = judge.version

    down = run_job(services.auto_job_launch(project=imported, annotator=judge, kind="score", aspects=["overall"]))
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    up = run_job(services.auto_job_launch(project=imported, annotator=judge, kind="score", aspects=["overall"]))
    judge.refresh_from_db()

    assert down.status == "failed" and down.message.startswith("model hub unreachable: http://127.0.0.1:")
    assert up.status == "succeeded", up.message
    assert judge.model_commits == {"org/tiny-pickscore": sha} and judge.version != unresolved_version
    assert up.machine_version == judge.version and up.model_commits == {"org/tiny-pickscore": sha}
    assert set(AspectScore.objects.filter(machine_annotator=judge).values_list("machine_version", flat=True)) == {
        judge.version}
    assert AspectScore.objects.filter(machine_annotator=judge).count() == 4


def test_a_job_started_offline_with_a_cold_cache_fails_saying_so(hub_server, tiny, imported, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    judge = services.machine_annotator_create(name="pick", backend="pickscore", model_ref="org/tiny-pickscore")

    job = run_job(services.auto_job_launch(project=imported, annotator=judge, kind="score", aspects=["overall"]))

    assert job.status == "failed"
    assert job.message == "HF_HUB_OFFLINE is set and org/tiny-pickscore is not in the cache"


def test_a_plain_org_repo_names_a_transformers_judge_on_the_hub(hub_server, imported, judge_dirs):
    sha = hub_server.add_commit("tiny-org/tiny-vl-judge", Path(judge_dirs.scorer))
    judge = services.machine_annotator_create(name="vlm", backend="mllm_transformers",
                                              model_ref="tiny-org/tiny-vl-judge")

    job = run_job(services.auto_job_launch(project=imported, annotator=judge, kind="score",
                                           aspects=["aesthetic", "fidelity"]))

    assert job.status == "succeeded", job.message
    assert judge.model_commits == {"tiny-org/tiny-vl-judge": sha}
    values_ = {(s.aspect, s.value, s.machine_version) for s in AspectScore.objects.filter(machine_annotator=judge)}
    assert values_ == {("aesthetic", 4.0, judge.version), ("fidelity", 2.0, judge.version)}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_fetches_the_saved_commit_through_the_hub_endpoint_of_its_own_environment(
        private_workers, hub_server, tiny, imported, tmp_path):
    sha = hub_server.add_commit("laion/tiny-clip", clip_repo(tiny.clip))
    worker_cache = tmp_path / "worker-cache"
    private_workers.start(beat=False, env={"HF_ENDPOINT": hub_server.endpoint, "MODEL_CACHE_DIR": str(worker_cache)})
    judge = services.machine_annotator_create(name="clip", backend="clipscore", model_ref="hf-hub:laion/tiny-clip",
                                              parameters={"num_workers": 0})
    hub_server.add_commit("laion/tiny-clip", clip_repo(tiny.clip_v2))  # main moves after the annotator was saved

    job = services.auto_job_launch(project=imported, annotator=judge, kind="score")
    finished = wait_for(lambda: AutoAnnotationJob.objects.filter(pk=job.pk, status__in=AutoAnnotationJob.FINISHED)
                        .first(), timeout=120, what="the job to finish")

    assert finished.status == "succeeded", finished.message
    assert AspectScore.objects.filter(machine_annotator=judge, machine_version=judge.version).count() == 4
    assert sorted(p.name for p in (worker_cache / "models--laion--tiny-clip" / "snapshots").iterdir()) == [sha]
