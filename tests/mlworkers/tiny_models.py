"""Tiny, randomly initialised CLIP-family models written to disk the way real ones are shipped,
so every loading and scoring path runs on CPU in well under a second per model.

Helpers, not tests. Seeds are fixed: the same call writes the same weights.
"""
import json
from pathlib import Path


def tiny_open_clip_config(embed_dim: int = 32) -> dict:
    """A 32 px ViT (patch 16, width 32, 1 layer, 2 heads) and a 1-layer text transformer of
    width 32 over open_clip's default tokenizer (49,408 tokens, context 77)."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }


def make_tiny_open_clip(dir: Path, embed_dim: int = 32, *, seed: int = 0,
                        checkpoint: str = "open_clip_model.safetensors") -> Path:
    """Write `open_clip_config.json` and random weights (safetensors, or a torch .bin) into `dir`."""
    import torch
    from open_clip.model import CLIP

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    config = tiny_open_clip_config(embed_dim)
    (dir / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in CLIP(**config).state_dict().items()}
    if checkpoint.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, str(dir / checkpoint))
    else:
        torch.save(state, dir / checkpoint)
    return dir


def make_tiny_aesthetic_head(path: Path, in_dim: int, *, seed: int = 0) -> Path:
    """A LAION aesthetic predictor v2 head (`layers.N.*` keys, as released) taking `in_dim` inputs."""
    import torch

    from mlworkers.backends.clip_models import aesthetic_head

    torch.manual_seed(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(aesthetic_head(in_dim).state_dict(), path)
    return path


def _tiny_clip_tokenizer():
    """A CLIP BPE tokenizer that needs no download: byte-level characters (each also with the
    end-of-word mark CLIP's BPE puts on a word's last symbol) and no merges, so any text
    tokenizes, character by character."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(symbol, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[])


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2's bytes_to_unicode)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def make_tiny_pickscore(dir: Path, *, seed: int = 0) -> Path:
    """A tiny transformers CLIPModel and its CLIPProcessor (32 px images), saved to `dir`."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    dir = Path(dir)
    tokenizer = _tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"image_size": 32, "patch_size": 16, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(dir)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dir)
    return dir
