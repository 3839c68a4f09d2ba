"""The in-process MLLM judge (`mllm_transformers`) on tiny Qwen2.5-VL checkpoints built here.

Every checkpoint is a real `save_pretrained` folder (config, safetensors, word-level tokenizer,
Qwen2-VL image processor, chat template) that the backend loads through `mlworkers.weights`
with `AutoProcessor` / `AutoModelForImageTextToText`, offline. A randomly initialised judge
answers garbage, which tests the failure contract and batching. To test the success path
without any hook in the backend, two checkpoints are wired by hand to answer a fixed JSON text
whatever they are shown: every attention and MLP block writes zero into the residual stream, so
the last hidden state is the last token's embedding, and the output head maps the embedding of
each word of the answer (starting from "assistant", the generation prompt's last token) to the
next word, and the last word to `<|im_end|>`. Greedy decoding then spells out the answer.
"""
import io
import json
import shutil
from types import SimpleNamespace

import pytest
from PIL import Image

from mlworkers.backends.base import Aspect, BackendError, ImageRef, PairRequest, ScoreRequest, backend_class
from mlworkers.verdicts import pair_prompt, score_prompt

ASPECTS = (Aspect("aesthetic", "Aesthetic", "How pleasing is the image?"),
           Aspect("fidelity", "Fidelity", "Is it free of distortions?"))
PROMPTS = ("three red circles on a blue background", "a green square", "two cats")
# Answers whose whitespace-separated words are all different, so each word has one successor.
SCORE_ANSWER = ('{"aesthetic": {"score": 4, "rationale": "balanced colours"}, '
                '"fidelity": {"score":2, "rationale":"melted hands"}}')
PAIR_ANSWER = ('{"aesthetic": {"choice": "second", "rationale": "sharper"}, '
               '"fidelity": {"choice":"tie", "rationale":"both fine"}}')
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IMAGE_SIZES = {"a.png": (64, 48), "b.png": (40, 90), "c.png": (50, 50), "d.png": (120, 30)}


# --- tiny checkpoints --------------------------------------------------------------------------

def _tiny_processor(extra_answers=()):
    """The word-level processor every checkpoint here shares; `extra_answers` add their words
    after the others (so the shared words keep their ids), for a judge wired to answer them."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    texts = [score_prompt("", p, ASPECTS, 5) for p in PROMPTS] + [pair_prompt("", p, ASPECTS) for p in PROMPTS]
    words = ["[UNK]", "user", "assistant"] + [w for t in [*texts, SCORE_ANSWER, PAIR_ANSWER, *extra_answers]
                                              for w in t.split()]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(SPECIAL_TOKENS + words))}
    word_level = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # decoding joins words with one space
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", additional_special_tokens=SPECIAL_TOKENS)
    # 28 px per vision token (14 px patches merged 2x2); 4 to 16 tokens per image.
    images = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    return Qwen2_5_VLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                               chat_template=CHAT_TEMPLATE)


def _tiny_model(tokenizer, hidden_size=64):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)))
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, bos_token_id=None, eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"],
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 3, 3]}),  # sums to head_dim / 2
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden_size,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[0]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def _wire_to_answer(model, tokenizer, answer: str) -> None:
    """Make `model` answer `answer` (then <|im_end|>) whatever it is shown; see the module docstring."""
    import torch

    words = answer.split()
    assert len(set(words)) == len(words) and "[UNK]" not in tokenizer.convert_ids_to_tokens(
        tokenizer.convert_tokens_to_ids(words))
    chain = tokenizer.convert_tokens_to_ids(["assistant", *words, "<|im_end|>"])
    embeddings, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    with torch.no_grad():
        for name, parameter in model.model.language_model.named_parameters():
            if ".o_proj." in name or ".down_proj." in name:
                parameter.zero_()
        basis = torch.linalg.qr(torch.randn(embeddings.shape[1], len(chain)))[0].T  # orthonormal rows
        embeddings[chain] = basis
        head.zero_()
        for step, successor in enumerate(chain[1:]):
            head[successor] = 10 * basis[step]


@pytest.fixture(scope="session")
def judge_dirs(tmp_path_factory):
    """Checkpoint folders: `garbage` (random weights), `scorer` and `pair_judge` (wired answers)."""
    processor = _tiny_processor()
    dirs = {}
    for name, answer in (("garbage", None), ("scorer", SCORE_ANSWER), ("pair_judge", PAIR_ANSWER)):
        folder = tmp_path_factory.mktemp(name)
        model = _tiny_model(processor.tokenizer)
        if answer:
            _wire_to_answer(model, processor.tokenizer, answer)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        dirs[name] = folder
    return SimpleNamespace(**dirs)


# --- requests and the backend ------------------------------------------------------------------

def _png(size, color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


class Storage:
    """read_bytes over a dict of keys; records what was read."""

    def __init__(self, extra=None):
        self.files = {key: _png(size, (60 * i, 200 - 40 * i, 90)) for i, (key, size) in enumerate(IMAGE_SIZES.items())}
        self.files.update({"preview/" + key: data for key, data in self.files.items()})
        self.files.update(extra or {})
        self.read = []

    def __call__(self, key: str) -> bytes:
        self.read.append(key)
        return self.files[key]


def ref(image_id: int, key: str) -> ImageRef:
    return ImageRef(image_id=image_id, preview_key="preview/" + key, storage_key=key)


A, B, C, D = ref(1, "a.png"), ref(2, "b.png"), ref(3, "c.png"), ref(4, "d.png")


def judge(folder, storage=None, **parameters):
    return backend_class("mllm_transformers")(model_ref=str(folder), parameters=parameters,
                                              read_bytes=storage or Storage(), device="cpu")


def score_requests():
    return [ScoreRequest(PROMPTS[0], [A, B], ASPECTS, 5), ScoreRequest(PROMPTS[1], [C], ASPECTS, 5),
            ScoreRequest(PROMPTS[2], [D], ASPECTS[:1], 5)]


def pair_requests():
    return [PairRequest(PROMPTS[0], A, B, ASPECTS), PairRequest(PROMPTS[0], B, A, ASPECTS),
            PairRequest(PROMPTS[2], C, D, ASPECTS[1:])]


# --- the success path --------------------------------------------------------------------------

def test_scores_are_read_from_the_judges_json_one_per_image_and_aspect_in_request_order(judge_dirs):
    results = judge(judge_dirs.scorer, batch_size=2).score(score_requests())

    assert [(r.image_id, r.aspect) for r in results] == [
        (1, "aesthetic"), (1, "fidelity"), (2, "aesthetic"), (2, "fidelity"),
        (3, "aesthetic"), (3, "fidelity"), (4, "aesthetic")]
    assert all(not r.failed and not r.error for r in results)
    assert [(r.value, r.rationale) for r in results[:2]] == [(4.0, "balanced colours"), (2.0, "melted hands")]
    assert results[-1].value == 4.0


def test_pair_verdicts_are_read_from_the_judges_json_one_per_pair_and_aspect_in_order(judge_dirs):
    results = judge(judge_dirs.pair_judge).judge_pairs(pair_requests())

    assert [(r.first_id, r.second_id, r.aspect) for r in results] == [
        (1, 2, "aesthetic"), (1, 2, "fidelity"), (2, 1, "aesthetic"), (2, 1, "fidelity"), (3, 4, "fidelity")]
    assert [(r.choice, r.rationale) for r in results[:2]] == [("second", "sharper"), ("tie", "both fine")]
    assert results[-1].choice == "tie" and not any(r.failed for r in results)


def test_a_pair_shows_both_images_in_the_given_order_with_the_pair_prompt(judge_dirs):
    storage = Storage()
    backend = judge(judge_dirs.pair_judge, storage)
    seen = []
    render = backend._processor.apply_chat_template
    backend._processor.apply_chat_template = lambda messages, **kw: seen.append(messages) or render(messages, **kw)

    backend.judge_pairs([PairRequest(PROMPTS[1], D, B, ASPECTS)])

    assert storage.read == ["d.png", "b.png"]
    content = seen[0][0]["content"]
    assert [part["type"] for part in content] == ["image", "image", "text"]
    assert content[2]["text"] == pair_prompt("", PROMPTS[1], ASPECTS)


# --- k samples -------------------------------------------------------------------------------------

def test_k_samples_per_pair_are_sampled_parsed_and_tagged_and_the_wired_judge_agrees_with_itself(judge_dirs):
    from curation.stats.judge_samples import self_consistency

    backend = judge(judge_dirs.pair_judge, do_sample=True, temperature=0.7, batch_size=8)
    calls = []
    generate = backend._model.generate
    backend._model.generate = lambda **kw: calls.append(kw) or generate(**kw)

    results = backend.judge_pairs([PairRequest(PROMPTS[0], A, B, ASPECTS, samples=(0, 1, 2)),
                                   PairRequest(PROMPTS[2], C, D, ASPECTS[1:], samples=(2,))])

    assert [(r.first_id, r.sample, r.aspect) for r in results] == [
        (1, s, a.key) for s in (0, 1, 2) for a in ASPECTS] + [(3, 2, "fidelity")]
    assert not any(r.failed for r in results)
    assert [r.choice for r in results if r.aspect == "aesthetic"] == ["second"] * 3
    assert len(calls) == 1 and len(calls[0]["input_ids"]) == 4  # one row per sample
    assert calls[0]["do_sample"] is True and calls[0]["temperature"] == 0.7
    codes = {"first": 0, "second": 1, "tie": 2}
    verdicts = [codes[r.choice] for r in results[:6] if r.aspect == "aesthetic"]
    assert self_consistency(query=[0, 0, 0], verdict=verdicts).agreement == 1.0


def test_a_pairs_samples_are_split_over_batches_of_batch_size_generations(judge_dirs):
    backend = judge(judge_dirs.pair_judge, do_sample=True, batch_size=4)
    rows = []
    generate = backend._model.generate
    backend._model.generate = lambda **kw: rows.append(len(kw["input_ids"])) or generate(**kw)

    results = backend.judge_pairs([PairRequest(PROMPTS[0], A, B, ASPECTS, samples=(0, 1, 2)),
                                   PairRequest(PROMPTS[0], B, A, ASPECTS, samples=(0, 1, 2))])

    assert rows == [3, 3] and len(results) == 12 and not any(r.failed for r in results)


def test_several_samples_of_a_greedy_judge_are_a_backend_error(judge_dirs):
    with pytest.raises(BackendError, match="do_sample"):
        judge(judge_dirs.pair_judge).judge_pairs([PairRequest(PROMPTS[0], A, B, ASPECTS, samples=(0, 1))])


@pytest.mark.parametrize("parameters, refused", [({}, True), ({"do_sample": False}, True),
                                                 ({"do_sample": True, "temperature": 0.7}, False)])
def test_only_do_sample_samples(parameters, refused):
    refusal = backend_class("mllm_transformers").sampling_refusal(parameters)

    assert bool(refusal) == refused and (not refused or "do_sample" in refusal)


# --- failures ------------------------------------------------------------------------------------

def test_a_random_judges_garbage_becomes_failures_with_raw_text_never_scores(judge_dirs):
    backend = judge(judge_dirs.garbage, max_new_tokens=12)
    scores = backend.score(score_requests())
    verdicts = backend.judge_pairs(pair_requests())

    assert len(scores) == 7 and len(verdicts) == 5
    assert all(r.failed and r.value is None for r in scores) and all(r.failed and r.choice is None for r in verdicts)
    assert all(r.error for r in scores + verdicts)
    assert any(r.raw for r in scores) and any(r.raw for r in verdicts)
    assert scores[0].raw == scores[1].raw  # one answer per image, kept on each aspect's failure


def test_an_answer_cut_off_at_max_new_tokens_keeps_its_text_and_says_so(judge_dirs):
    results = judge(judge_dirs.scorer, max_new_tokens=3).score([ScoreRequest(PROMPTS[1], [C], ASPECTS, 5)])

    assert [r.raw for r in results] == ['{"aesthetic": {"score": 4,'] * 2
    assert all(r.error.startswith("not JSON") and r.error.endswith("(the answer stopped at max_new_tokens)")
               for r in results)


def test_a_score_off_the_scale_is_a_failure(judge_dirs):
    results = judge(judge_dirs.scorer).score([ScoreRequest(PROMPTS[1], [C], ASPECTS, 3)])

    assert all(r.failed for r in results)
    assert [r.error for r in results] == ["aesthetic: score 4 is outside 1..3"] * 2
    assert json.loads(results[0].raw) == json.loads(SCORE_ANSWER)


def test_an_empty_prompt_fails_without_generating_and_its_neighbours_are_judged(judge_dirs):
    backend = judge(judge_dirs.scorer)
    generated_rows = []
    generate = backend._model.generate
    backend._model.generate = lambda **kw: generated_rows.append(len(kw["input_ids"])) or generate(**kw)

    results = backend.score([ScoreRequest("  ", [A, B], ASPECTS, 5), ScoreRequest(PROMPTS[1], [C], ASPECTS, 5)])

    assert generated_rows == [1]
    assert [(r.image_id, r.error) for r in results[:4]] == [(1, "empty prompt")] * 2 + [(2, "empty prompt")] * 2
    assert all(r.failed for r in results[:4]) and [r.value for r in results[4:]] == [4.0, 2.0]


def test_a_corrupt_image_fails_only_its_own_items(judge_dirs):
    storage = Storage({"broken.png": b"\x89PNG\r\n\x1a\n not really"})
    backend = judge(judge_dirs.pair_judge, storage)
    broken = ref(9, "broken.png")

    results = backend.judge_pairs([PairRequest(PROMPTS[0], A, broken, ASPECTS), PairRequest(PROMPTS[0], A, B, ASPECTS)])

    assert [r.failed for r in results] == [True, True, False, False]
    assert results[0].error.startswith("image broken.png cannot be decoded")
    assert [r.choice for r in results[2:]] == ["second", "tie"]


# --- batching --------------------------------------------------------------------------------------

def test_batched_generation_with_left_padding_answers_as_one_at_a_time(judge_dirs):
    one_by_one = judge(judge_dirs.garbage, batch_size=1, max_new_tokens=12)
    batched = judge(judge_dirs.garbage, batch_size=4, max_new_tokens=12)
    requests = score_requests()  # images of different sizes: prompts of different lengths

    alone = [r.raw for r in one_by_one.score(requests)]
    together = [r.raw for r in batched.score(requests)]
    pairs_alone = [r.raw for r in one_by_one.judge_pairs(pair_requests())]
    pairs_together = [r.raw for r in batched.judge_pairs(pair_requests())]

    assert len(set(alone)) > 1  # the images make a difference, so equal answers mean something
    assert together == alone and pairs_together == pairs_alone


def test_images_are_read_from_previews_when_asked_and_shrunk_to_image_max_side(judge_dirs):
    storage = Storage()
    backend = judge(judge_dirs.scorer, storage, image_source="preview", image_max_side=32)
    pictures = []
    read = backend._read_image
    backend._read_image = lambda image: pictures.append(read(image)) or pictures[-1]

    backend.score([ScoreRequest(PROMPTS[0], [D], ASPECTS, 5)])

    assert storage.read == ["preview/d.png"]
    assert pictures[0].size == (32, 8)


# --- loading -----------------------------------------------------------------------------------------

def test_a_missing_model_folder_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="weights not found"):
        judge(tmp_path / "nowhere")


def test_a_folder_without_a_model_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="no config.json"):
        judge(tmp_path)


def test_weights_of_the_wrong_shape_are_a_backend_error(judge_dirs, tmp_path):
    shutil.copytree(judge_dirs.garbage, tmp_path / "judge")
    _tiny_model(_tiny_processor().tokenizer, hidden_size=32).save_pretrained(tmp_path / "narrow")
    shutil.copy(tmp_path / "narrow" / "model.safetensors", tmp_path / "judge" / "model.safetensors")

    with pytest.raises(BackendError, match=r"do not fit the model's architecture: .*"
                                           r"embed_tokens.weight \(checkpoint \d+x32, model \d+x64\)"):
        judge(tmp_path / "judge")


def test_a_checkpoint_missing_weights_is_a_backend_error(judge_dirs, tmp_path):
    from safetensors.torch import load_file, save_file

    shutil.copytree(judge_dirs.garbage, tmp_path / "judge")
    weights = load_file(tmp_path / "judge" / "model.safetensors")
    del weights["lm_head.weight"]
    save_file(weights, tmp_path / "judge" / "model.safetensors", metadata={"format": "pt"})

    with pytest.raises(BackendError, match=r"architecture: lm_head.weight \(missing\)$"):
        judge(tmp_path / "judge")


def test_unknown_or_bad_parameters_are_refused_before_loading(tmp_path):
    with pytest.raises(BackendError, match="unknown parameters temprature"):
        judge(tmp_path / "nowhere", temprature=0.2)
    with pytest.raises(BackendError, match="image_source"):
        judge(tmp_path / "nowhere", image_source="thumbnail")
    with pytest.raises(BackendError, match="do_sample must be true or false"):
        judge(tmp_path / "nowhere", do_sample="yes")
    with pytest.raises(BackendError, match="temperature must be above 0"):
        judge(tmp_path / "nowhere", do_sample=True, temperature=0)


def test_the_backend_is_registered_as_a_scorer_and_pair_judge():
    cls = backend_class("mllm_transformers")
    assert cls.can_score and cls.can_judge_pairs


def test_the_judge_runs_in_bfloat16_as_on_cuda(judge_dirs):
    backend = judge(judge_dirs.scorer, dtype="bfloat16")

    results = backend.score([ScoreRequest(PROMPTS[1], [C], ASPECTS, 5)])

    assert str(backend._model.dtype) == "torch.bfloat16"
    assert [r.value for r in results] == [4.0, 2.0]
