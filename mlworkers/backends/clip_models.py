"""Loading CLIP-family models from local folders, S3 keys or Hub references (`mlworkers.weights`
fetches them): open_clip models from a config + checkpoint (open_clip's own Hub layout), the LAION
aesthetic head, and transformers' CLIPModel for PickScore.

Every failure to load says which file and why, as a BackendError. torch, open_clip and
transformers are imported inside the functions.
"""
import atexit
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlworkers.backends.base import BackendError
from mlworkers.weights import local_path

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_CHECKPOINTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                         "open_clip_pytorch_model.bin")


@dataclass
class OpenClipModel:
    model: object  # open_clip.CLIP, on its device, in eval mode
    preprocess: object  # PIL image -> tensor (open_clip's inference transform)
    arch: str  # the architecture name registered with open_clip
    tokenizer: object = None


def load_open_clip(model_ref: str, *, model_name: str = "", device: str = "cpu",
                   with_tokenizer: bool = True) -> OpenClipModel:
    """An open_clip model with its weights.

    `model_ref` is a folder (local or `s3://bucket/prefix/`) holding `open_clip_config.json`
    (an open_clip model config `{"embed_dim", "vision_cfg", "text_cfg"}`, or open_clip's
    hub layout `{"model_cfg": ..., "preprocess_cfg": ...}`) and one of OPEN_CLIP_CHECKPOINTS;
    or, with `model_name` naming a built-in architecture ("ViT-L-14", "ViT-H-14"...), a
    checkpoint file (or a folder holding one of OPEN_CLIP_CHECKPOINTS).
    """
    import open_clip

    path = local_path(model_ref, hub_files="open_clip")
    preprocess_cfg = {}
    if model_name:
        if model_name not in open_clip.list_models():
            raise BackendError(f"unknown open_clip architecture {model_name!r}")
        arch = label = model_name
    elif path.is_dir():
        arch, preprocess_cfg = _register_config(path)
        label = f"the model of {path / OPEN_CLIP_CONFIG}"
    else:
        raise BackendError(f"{model_ref} is a file: give a folder holding {OPEN_CLIP_CONFIG} and a checkpoint, "
                           f"or name its architecture with the parameter model_name")
    checkpoint = _checkpoint_in(path) if path.is_dir() else path
    overrides = {f"image_{k}": preprocess_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode")
                 if k in preprocess_cfg}
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(checkpoint), device=device,
                                                                     **overrides)
    except RuntimeError as exc:
        if "Error(s) in loading state_dict" in str(exc):
            raise BackendError(f"checkpoint does not fit {label}: {first_mismatch(exc)} ({checkpoint})") from None
        raise BackendError(f"cannot read checkpoint {checkpoint}: {exc}") from None
    except (AssertionError, KeyError, IndexError) as exc:  # open_clip's resizing of position embeddings
        raise BackendError(f"checkpoint does not fit {label}: {exc} ({checkpoint})") from None
    except Exception as exc:  # noqa: BLE001 - unreadable file: pickle, safetensors header, zip...
        raise BackendError(f"cannot read checkpoint {checkpoint}: {type(exc).__name__}: {exc}") from None
    model.eval()
    loaded = OpenClipModel(model=model, preprocess=preprocess, arch=arch)
    if with_tokenizer:
        try:
            loaded.tokenizer = open_clip.get_tokenizer(arch)
        except Exception as exc:  # noqa: BLE001 - e.g. a config naming a hub tokenizer
            raise BackendError(f"cannot build the tokenizer of {arch}: {exc}") from None
    return loaded


def first_mismatch(exc: Exception) -> str:
    """The first complaint of a load_state_dict error, short enough for a job's message."""
    lines = [line.strip() for line in str(exc).split("\n") if line.strip()]
    line = lines[1] if len(lines) > 1 else (lines[0] if lines else repr(exc))
    return line if len(line) <= 300 else line[:297] + "..."


_config_dir: Path | None = None


def _register_config(folder: Path) -> tuple[str, dict]:
    """Register `folder`'s config with open_clip under a name unique to the folder and content."""
    import open_clip

    config_path = folder / OPEN_CLIP_CONFIG
    if not config_path.is_file():
        raise BackendError(f"weights not found: {config_path}")
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f"unreadable {config_path}: {exc}") from None
    config = raw.get("model_cfg", raw) if isinstance(raw, dict) else None
    if not isinstance(config, dict) or not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise BackendError(f"{config_path} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)")
    digest = hashlib.sha256(str(folder.resolve()).encode() + json.dumps(config, sort_keys=True).encode())
    arch = f"prefstudio-{digest.hexdigest()[:16]}"
    if arch not in open_clip.list_models():
        # open_clip names a config after its file, and rescans every registered path on each
        # add: the copy is kept (in a folder of this process's) for as long as the process lives.
        global _config_dir
        if _config_dir is None:
            _config_dir = Path(tempfile.mkdtemp(prefix="open-clip-configs-"))
            atexit.register(shutil.rmtree, _config_dir, True)
        copy = _config_dir / f"{arch}.json"
        copy.write_text(json.dumps(config))
        open_clip.add_model_config(copy)
    return arch, raw.get("preprocess_cfg", {}) if "model_cfg" in raw else {}


def _checkpoint_in(folder: Path) -> Path:
    for name in OPEN_CLIP_CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    raise BackendError(f"weights not found: no {' or '.join(OPEN_CLIP_CHECKPOINTS)} in {folder}")


# --- LAION aesthetic predictor v2 ------------------------------------------------------------------

def aesthetic_head(in_dim: int):
    """The LAION aesthetic predictor v2 MLP (improved-aesthetic-predictor), state-dict compatible
    with its released files (keys `layers.N.*`)."""
    from torch import nn

    class AestheticHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(in_dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

        def forward(self, embedding):
            return self.layers(embedding)

    return AestheticHead()


def load_aesthetic_head(head_ref: str, *, tower_width: int, device: str):
    """The head in `head_ref` (a .pth/.pt state dict or .safetensors, local, s3:// or hf://), checked
    to take `tower_width`-wide embeddings."""
    path = local_path(head_ref, hub_files="file")
    if path.is_dir():
        raise BackendError(f"aesthetic head {head_ref} is a folder: give the head's weights file")
    state = _read_state_dict(path)
    state = {(k if k.startswith("layers.") else f"layers.{k}"): v for k, v in state.items()}
    first = state.get("layers.0.weight")
    if first is None or first.ndim != 2:
        raise BackendError(f"aesthetic head {path} is not a LAION aesthetic predictor v2 MLP (no layers.0.weight)")
    head_width = int(first.shape[1])
    if head_width != tower_width:
        raise BackendError(f"aesthetic head {path} takes {head_width}-wide embeddings but the image tower gives "
                           f"{tower_width}-wide ones")
    head = aesthetic_head(head_width)
    try:
        head.load_state_dict(state)
    except RuntimeError as exc:
        raise BackendError(f"aesthetic head {path} does not fit the LAION predictor v2 MLP: {first_mismatch(exc)}") from None
    return head.to(device).eval()


def _read_state_dict(path: Path) -> dict:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise BackendError(f"cannot read weights {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackendError(f"{path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


# --- transformers CLIPModel (PickScore) ------------------------------------------------------------

@dataclass
class HFClipModel:
    model: object  # transformers.CLIPModel
    processor: object  # CLIPProcessor: image_processor + tokenizer


class HFImagePreprocess:
    """PIL image -> pixel tensor with a transformers image processor (runs in DataLoader workers)."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, image):
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]


def load_hf_clip(model_ref: str, *, processor_ref: str = "", device: str = "cpu") -> HFClipModel:
    """A transformers CLIPModel from a saved folder and the processor saved with it (or in
    `processor_ref`: PickScore's own repository ships the model, its processor is CLIP-H's)."""
    from transformers import AutoProcessor, CLIPModel

    path = local_path(model_ref, hub_files="transformers")
    processor_path = local_path(processor_ref, hub_files="processor") if processor_ref else path
    for folder, what in ((path, "model"), (processor_path, "processor")):
        if not folder.is_dir():
            raise BackendError(f"the CLIP {what} {folder} must be a folder saved with save_pretrained")
    try:
        model = CLIPModel.from_pretrained(str(path), local_files_only=True)
    except (RuntimeError, ValueError) as exc:
        mismatch = _hf_first_mismatch(path) or first_mismatch(exc)
        raise BackendError(f"checkpoint does not fit CLIPModel: {mismatch} ({path})") from None
    except Exception as exc:  # noqa: BLE001 - missing files, unreadable weights
        raise BackendError(f"cannot load a CLIPModel from {path}: {type(exc).__name__}: {exc}") from None
    try:
        processor = AutoProcessor.from_pretrained(str(processor_path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise BackendError(f"cannot load a CLIP processor from {processor_path}: {type(exc).__name__}: {exc}") from None
    return HFClipModel(model=model.to(device).eval(), processor=processor)


def _hf_first_mismatch(folder: Path) -> str:
    """The first weight whose shape differs between `folder`'s safetensors files and the model its
    config.json describes ("" when that cannot be told): transformers only prints its report."""
    import torch
    from safetensors import safe_open
    from transformers import CLIPConfig, CLIPModel

    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in CLIPModel(CLIPConfig.from_pretrained(str(folder))).state_dict().items()}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as weights:
                for key in weights.keys():
                    shape = tuple(weights.get_slice(key).get_shape())
                    if key in expected and expected[key] != shape:
                        return f"{key} is {list(shape)} in the checkpoint but {list(expected[key])} in the model"
    except Exception:  # noqa: BLE001 - only an explanation: fall back to transformers' message
        return ""
    return ""
