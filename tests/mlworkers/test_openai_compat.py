import base64
import json
import logging
import random
import socket
import time

import pytest

from mlworkers.backends.base import Aspect, BackendError, ImageRef, PairRequest, ScoreRequest, backend_class
from mlworkers.backends.openai_compat import OpenAIChatBackend
from mlworkers.verdicts import pair_prompt, pair_schema, score_prompt, score_schema
from tests.conftest import image_bytes
from tests.mlworkers.chat_server import Reply, alternating_verdicts

ASPECTS = [Aspect("aesthetic", "Aesthetic", "How beautiful is it?"), Aspect("fidelity", "Fidelity")]
RED, BLUE = image_bytes((220, 20, 20)), image_bytes((20, 20, 220), fmt="JPEG")
STORE = {"images/red.png": RED, "previews/red.webp": image_bytes((220, 20, 20), fmt="WEBP"),
         "images/blue.jpg": BLUE, "previews/blue.webp": image_bytes((20, 20, 220), fmt="WEBP")}
RED_REF = ImageRef(1, "previews/red.webp", "images/red.png")
BLUE_REF = ImageRef(2, "previews/blue.webp", "images/blue.jpg")


def make_backend(chat_server, **parameters) -> OpenAIChatBackend:
    return OpenAIChatBackend(model_ref="judge-1", read_bytes=STORE.__getitem__,
                             parameters={"base_url": chat_server.base_url, "backoff_s": 0.01, **parameters})


def scores_json(**scores) -> str:
    return json.dumps({key: {"score": value, "rationale": f"{key} is {value}"} for key, value in scores.items()})


def score_request(*images, prompt="a red square") -> ScoreRequest:
    return ScoreRequest(prompt=prompt, images=images or (RED_REF,), aspects=ASPECTS, scale=5)


def text_of_exception(exc: BaseException | None) -> str:
    texts = []
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


# --- scoring --------------------------------------------------------------------------------------

def test_scoring_asks_all_aspects_in_one_request_per_image_against_the_schema(chat_server, settings):
    settings.JUDGE_API_KEY = "sk-test-key"
    chat_server.responder = lambda request: Reply.chat(
        scores_json(aesthetic=5, fidelity=4) if request.images == [RED] else scores_json(aesthetic=2, fidelity=1))

    results = make_backend(chat_server).score([score_request(RED_REF, BLUE_REF)])

    assert [(r.image_id, r.aspect, r.value, r.rationale) for r in results] == [
        (1, "aesthetic", 5.0, "aesthetic is 5"), (1, "fidelity", 4.0, "fidelity is 4"),
        (2, "aesthetic", 2.0, "aesthetic is 2"), (2, "fidelity", 1.0, "fidelity is 1")]
    assert len(chat_server.requests) == 2
    sent = chat_server.requests[0]
    assert sent.headers["authorization"] == "Bearer sk-test-key"
    assert sent.body["model"] == "judge-1"
    assert (sent.body["temperature"], sent.body["max_tokens"]) == (0, 512)
    assert sent.body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "aspect_scores", "strict": True, "schema": score_schema(ASPECTS, 5)}}
    assert [part["type"] for part in sent.content] == ["text", "image_url"]
    assert sent.text == score_prompt("", "a red square", ASPECTS, 5)


def test_scoring_uses_the_annotators_prompt_template(chat_server):
    chat_server.reply(Reply.chat(scores_json(aesthetic=3, fidelity=3)))
    backend = make_backend(chat_server)
    backend.prompt_template = "Judge {prompt} from 1 to {scale}:\n{aspects}\n{example}"

    backend.score([score_request()])

    assert chat_server.requests[0].text == score_prompt(backend.prompt_template, "a red square", ASPECTS, 5)


def test_no_authorization_header_without_a_key(chat_server, settings):
    settings.JUDGE_API_KEY = ""
    chat_server.reply(Reply.chat(scores_json(aesthetic=3, fidelity=3)))

    make_backend(chat_server).score([score_request()])

    assert "authorization" not in chat_server.requests[0].headers


@pytest.mark.parametrize("data, mime", [
    (image_bytes(fmt="PNG"), "image/png"), (image_bytes(fmt="JPEG"), "image/jpeg"),
    (image_bytes(fmt="WEBP"), "image/webp"), (image_bytes(fmt="GIF"), "image/gif"),
])
def test_images_are_sent_as_data_urls_typed_by_their_magic(chat_server, data, mime):
    chat_server.reply(Reply.chat(scores_json(aesthetic=3, fidelity=3)))
    backend = make_backend(chat_server)
    backend.read_bytes = {"images/no-extension": data}.__getitem__

    backend.score([score_request(ImageRef(9, "previews/x.webp", "images/no-extension"))])

    (url,) = chat_server.requests[0].image_urls
    assert url == f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_preview_image_source_sends_the_preview(chat_server):
    chat_server.reply(Reply.chat(scores_json(aesthetic=3, fidelity=3)))

    make_backend(chat_server, image_source="preview").score([score_request()])

    assert chat_server.requests[0].images == [STORE["previews/red.webp"]]
    assert chat_server.requests[0].image_urls[0].startswith("data:image/webp;base64,")


def test_a_fenced_json_block_is_read(chat_server):
    chat_server.reply(Reply.chat("```json\n" + scores_json(aesthetic=4, fidelity=2) + "\n```"))

    results = make_backend(chat_server).score([score_request()])

    assert [r.value for r in results] == [4.0, 2.0]


@pytest.mark.parametrize("content, finish_reason, error", [
    ('{"aesthetic": {"score": 4,, "rationale": "x"}}', "stop", "not JSON"),
    ("I would rate this image a 4 for aesthetics and a 3 for fidelity.", "stop", "not JSON"),
    ('{"aesthetic": {"score": 4, "rationale": "Warm col', "length", "stopped at max_tokens"),
    (scores_json(aesthetic=7, fidelity=3), "stop", "aesthetic: score 7 is outside 1..5"),
    (scores_json(aesthetic=4), "stop", "no entry for aspect 'fidelity'"),
], ids=["malformed-json", "prose", "truncated", "out-of-scale", "missing-aspect"])
def test_an_unreadable_answer_fails_every_aspect_of_the_image_keeping_the_raw_text(
        chat_server, content, finish_reason, error):
    chat_server.reply(Reply.chat(content, finish_reason))

    results = make_backend(chat_server).score([score_request()])

    assert [(r.image_id, r.aspect, r.failed, r.raw) for r in results] == [
        (1, "aesthetic", True, content), (1, "fidelity", True, content)]
    assert all(error in r.error for r in results)


def test_an_html_page_with_status_200_is_an_item_failure(chat_server):
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    chat_server.reply(Reply(body=page, headers={"Content-Type": "text/html"}))

    results = make_backend(chat_server).score([score_request()])

    assert all(r.failed and r.raw == page and "not a chat completion" in r.error for r in results)


def test_the_raw_text_kept_is_truncated(chat_server):
    chat_server.reply(Reply.chat("lorem ipsum " * 1000))

    results = make_backend(chat_server).score([score_request()])

    assert all(r.failed and len(r.raw) == 4000 for r in results)


def test_an_empty_prompt_fails_without_calling_the_endpoint(chat_server):
    results = make_backend(chat_server).score([score_request(prompt="  ")])

    assert [(r.failed, r.error) for r in results] == [(True, "empty prompt")] * 2
    assert chat_server.requests == []


def test_an_unreadable_image_is_an_item_failure(chat_server):
    chat_server.reply(Reply.chat(scores_json(aesthetic=3, fidelity=3)))

    results = make_backend(chat_server).score([score_request(ImageRef(5, "p", "images/gone.png"), RED_REF)])

    assert [(r.image_id, r.failed) for r in results] == [(5, True), (5, True), (1, False), (1, False)]
    assert "cannot read image images/gone.png" in results[0].error
    assert len(chat_server.requests) == 1


def test_another_4xx_is_a_final_item_failure(chat_server):
    chat_server.reply(Reply.error(400, "image is too large"), Reply.chat(scores_json(aesthetic=3, fidelity=3)))

    results = make_backend(chat_server).score([score_request()])

    assert all(r.failed and "HTTP 400: image is too large" in r.error for r in results)
    assert len(chat_server.requests) == 1


# --- pairs ----------------------------------------------------------------------------------------

def test_pair_verdicts_follow_the_order_given(chat_server):
    def prefer_red(request):  # the judge likes red, wherever it is shown
        choice = "first" if request.images[0] == RED else "second"
        return Reply.chat(json.dumps({a.key: {"choice": choice, "rationale": "red wins"} for a in ASPECTS}))

    chat_server.responder = prefer_red
    requests = [PairRequest("a red square", RED_REF, BLUE_REF, ASPECTS),
                PairRequest("a red square", BLUE_REF, RED_REF, ASPECTS)]

    results = make_backend(chat_server).judge_pairs(requests)

    assert [(r.first_id, r.second_id, r.aspect, r.choice) for r in results] == [
        (1, 2, "aesthetic", "first"), (1, 2, "fidelity", "first"),
        (2, 1, "aesthetic", "second"), (2, 1, "fidelity", "second")]
    assert sorted(r.images for r in chat_server.requests) == sorted([[RED, BLUE], [BLUE, RED]])
    sent = chat_server.requests[0]
    assert sent.text == pair_prompt("", "a red square", ASPECTS)
    assert sent.body["response_format"]["json_schema"]["schema"] == pair_schema(ASPECTS)


def test_an_unreadable_pair_verdict_is_an_item_failure(chat_server):
    chat_server.reply(Reply.chat(json.dumps({a.key: {"choice": "left", "rationale": ""} for a in ASPECTS})))

    results = make_backend(chat_server).judge_pairs([PairRequest("p", RED_REF, BLUE_REF, ASPECTS)])

    assert all(r.failed and "'left' is not first, second or tie" in r.error and r.raw for r in results)
    assert [(r.first_id, r.second_id) for r in results] == [(1, 2), (1, 2)]


# --- k samples of a pair ----------------------------------------------------------------------------

def test_k_samples_are_k_requests_through_the_bounded_pool_each_result_tagged_with_its_sample(chat_server):
    chat_server.responder = lambda request: alternating_verdicts(request) if request.images[0] == RED else \
        Reply.chat(json.dumps({a.key: {"choice": "tie", "rationale": "same"} for a in ASPECTS}), delay=0.05)
    reads = []
    backend = make_backend(chat_server, temperature=0.7, max_concurrency=2)
    backend.read_bytes = lambda key: reads.append(key) or STORE[key]

    results = backend.judge_pairs([PairRequest("a red square", RED_REF, BLUE_REF, ASPECTS, samples=(0, 1, 2)),
                                   PairRequest("a red square", BLUE_REF, RED_REF, ASPECTS, samples=(1, 3))])

    assert [(r.first_id, r.sample, r.aspect) for r in results] == [
        (1, s, a.key) for s in (0, 1, 2) for a in ASPECTS] + [(2, s, a.key) for s in (1, 3) for a in ASPECTS]
    red_first = [r.choice for r in results[:6] if r.aspect == "aesthetic"]
    assert sorted(red_first) == ["first", "first", "second"]  # three answers, not one answer three times
    assert [r.choice for r in results[6:]] == ["tie"] * 4 and not any(r.failed for r in results)
    assert len(chat_server.requests) == 5 and chat_server.max_in_flight == 2
    assert all(r.body["temperature"] == 0.7 and "n" not in r.body for r in chat_server.requests)
    assert sorted(reads) == sorted(["images/red.png", "images/blue.jpg"] * 2)  # a request's images read once


def test_a_failed_sample_is_a_failure_of_that_sample_only(chat_server):
    chat_server.responder = lambda request: Reply.chat("Honestly, the first.") if request.repeat == 1 else \
        alternating_verdicts(request)

    results = make_backend(chat_server, temperature=0.7, max_concurrency=1).judge_pairs(
        [PairRequest("p", RED_REF, BLUE_REF, ASPECTS, samples=(0, 1, 2))])

    failed = {r.sample for r in results if r.failed}
    assert len(failed) == 1 and len(results) == 6
    assert all(r.raw == "Honestly, the first." and "not JSON" in r.error for r in results if r.failed)
    assert all(r.choice == "first" for r in results if not r.failed)  # repeats 0 and 2


@pytest.mark.parametrize("parameters, refused", [({}, True), ({"temperature": 0}, True), ({"temperature": 0.7}, False)])
def test_only_a_temperature_above_zero_samples(parameters, refused):
    refusal = OpenAIChatBackend.sampling_refusal({"base_url": "http://h/v1", **parameters})

    assert bool(refusal) == refused and (not refused or "temperature" in refusal)


# --- retries and whole-job errors -----------------------------------------------------------------

def test_a_429_is_retried_after_the_retry_after_seconds(chat_server):
    chat_server.reply(Reply.error(429, "slow down", headers={"Retry-After": "1"}),
                      Reply.chat(scores_json(aesthetic=3, fidelity=3)))

    results = make_backend(chat_server).score([score_request()])

    assert [r.value for r in results] == [3.0, 3.0]
    first, second = chat_server.requests
    assert second.received_at - first.received_at >= 0.95


def test_5xx_until_max_retries_raises_backend_error(chat_server):
    chat_server.responder = lambda request: Reply.error(503, "overloaded")

    with pytest.raises(BackendError, match=r"after 3 attempts: HTTP 503: overloaded"):
        make_backend(chat_server, max_retries=2).score([score_request()])
    assert len(chat_server.requests) == 3


def test_a_timeout_is_retried_then_raises_backend_error_quickly(chat_server):
    chat_server.responder = lambda request: Reply.chat(scores_json(aesthetic=3, fidelity=3), delay=5)
    started = time.monotonic()

    with pytest.raises(BackendError, match="Timeout"):
        make_backend(chat_server, timeout_s=0.2, max_retries=2).score([score_request()])
    assert time.monotonic() - started < 2
    assert len(chat_server.requests) == 3


def test_an_unreachable_endpoint_raises_backend_error(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    backend = OpenAIChatBackend(model_ref="m", read_bytes=STORE.__getitem__,
                                parameters={"base_url": f"http://127.0.0.1:{port}/v1", "backoff_s": 0.01})

    with pytest.raises(BackendError, match="unreachable or failing after 5 attempts"):
        backend.score([score_request()])


@pytest.mark.parametrize("status", [401, 403, 404, 301])
def test_a_wrong_key_model_or_url_raises_backend_error_at_once(chat_server, status):
    chat_server.responder = lambda request: Reply.error(status, "no", headers={"Location": "https://elsewhere/v1"})

    with pytest.raises(BackendError, match=f"answered {status}"):
        make_backend(chat_server).score([score_request()])
    assert len(chat_server.requests) == 1


def test_a_backend_error_stops_the_rest_of_the_batch(chat_server):
    chat_server.responder = lambda request: Reply.error(500, "down")
    images = [RED_REF] * 20

    with pytest.raises(BackendError, match="HTTP 500"):
        make_backend(chat_server, max_concurrency=4, max_retries=2).score([score_request(*images)])
    assert len(chat_server.requests) <= 4 * 3


def test_concurrency_is_bounded_and_results_keep_the_request_order(chat_server):
    def answer(request):
        score = 5 if request.images == [RED] else 1
        prompt_number = int(request.text.split("prompt ")[1][0])
        return Reply.chat(scores_json(aesthetic=score, fidelity=prompt_number), delay=random.uniform(0.02, 0.1))

    chat_server.responder = answer
    requests = [score_request(RED_REF, BLUE_REF, RED_REF, BLUE_REF, prompt=f"prompt {n}") for n in (1, 2, 3)]

    results = make_backend(chat_server, max_concurrency=3).score(requests)

    assert [(r.image_id, r.value) for r in results if r.aspect == "aesthetic"] == [(1, 5.0), (2, 1.0)] * 6
    assert [r.value for r in results if r.aspect == "fidelity"] == [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    assert chat_server.max_in_flight == 3


def test_a_server_without_response_format_is_asked_without_it_from_then_on(chat_server):
    chat_server.reply(Reply.error(400, "Unknown field: response_format"),
                      Reply.chat(scores_json(aesthetic=4, fidelity=4)),
                      Reply.chat(scores_json(aesthetic=2, fidelity=2)))
    backend = make_backend(chat_server)

    first = backend.score([score_request()])
    second = backend.score([score_request()])

    assert [r.value for r in first + second] == [4.0, 4.0, 2.0, 2.0]
    assert ["response_format" in r.body for r in chat_server.requests] == [True, False, False]


def test_the_api_key_never_leaks(chat_server, settings, caplog):
    key = "sk-live-7f3a9c0d-SECRET"
    settings.JUDGE_API_KEY = key
    caplog.set_level(logging.DEBUG)
    echoes = []

    def echo_the_key(request):  # a careless server that repeats the key back in everything it says
        said = f"your key {request.headers['authorization']} at {request.body['model']}"
        echoes.append(said)
        return {"prompt 1": Reply.chat(said), "prompt 2": Reply.error(400, said),
                "prompt 3": Reply.error(500, said), "prompt 4": Reply.error(401, said)}[request.text.split('"')[1]]

    chat_server.responder = echo_the_key
    backend = make_backend(chat_server, max_retries=1)
    results = backend.score([score_request(prompt="prompt 1"), score_request(prompt="prompt 2")])
    errors = []
    for prompt in ("prompt 3", "prompt 4"):
        with pytest.raises(BackendError) as raised:
            backend.score([score_request(prompt=prompt)])
        errors.append(text_of_exception(raised.value))

    assert all(key in said for said in echoes)  # the key did reach the server
    assert all(r.failed and "[JUDGE_API_KEY]" in r.raw for r in results)
    texts = [repr(results), repr(backend), *errors, caplog.text,
             *(record.getMessage() for record in caplog.records)]
    assert not [text for text in texts if key in text]
    assert "[JUDGE_API_KEY]" in errors[1]


# --- configuration --------------------------------------------------------------------------------

@pytest.mark.parametrize("parameters, message", [
    ({}, "base_url"),
    ({"base_url": "127.0.0.1:8000/v1"}, "base_url"),
    ({"base_url": "http://h/v1", "image_source": "thumbnail"}, "image_source"),
    ({"base_url": "http://h/v1", "max_concurency": 2}, "unknown parameters max_concurency"),
    ({"base_url": "http://h/v1", "max_tokens": "lots"}, "must be numbers"),
])
def test_bad_parameters_raise_backend_error(parameters, message):
    with pytest.raises(BackendError, match=message):
        OpenAIChatBackend(model_ref="m", parameters=parameters)


def test_registered_as_openai_chat_scoring_and_judging_pairs():
    cls = backend_class("openai_chat")

    assert cls is OpenAIChatBackend
    assert cls.can_score and cls.can_judge_pairs
