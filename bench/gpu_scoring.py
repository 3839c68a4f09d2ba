"""CLIP-family scoring throughput: the whole pipeline against the bare model forward.

Pipeline: 448 px WebP previews in a local folder (made by this script), read through a
`read_bytes` callable and the DataLoader path of `mlworkers.pipeline` (worker processes decode
and preprocess), then the `laion_aesthetic` backend's own `score()` (image tower, head, one
ScoreResult per image in a list; the database write is measured elsewhere). Bare: the same
model on the same batch size, fed pre-made tensors already on the GPU. Both in bf16 autocast
(fp16 where bf16 is missing), batch 128, random weights (open_clip "ViT-L-14" and "ViT-H-14",
pretrained=None: no download). The ratio says how much of the GPU the feeding path leaves idle.

Needs torch, torchvision, open_clip, Pillow and numpy only: no Django, no database. open_clip
imports its tokenizer's dependencies (ftfy, regex, tqdm) when imported; the image tower does not
use them, so where they are missing (the GPU machines) stand-ins that fail on use take their place.

    python bench/gpu_scoring.py                  # on a CUDA machine
    python bench/gpu_scoring.py --cpu-smoke      # tiny model, few images, on CPU, in seconds

`--cpu-smoke` also reports how busy the DataLoader workers kept the CPUs (their CPU seconds over
the pipeline's wall time, and each core's busy share from /proc/stat, or psutil where installed).
"""
import argparse
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
import types
from multiprocessing import Pool
from pathlib import Path

from common import report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TINY_CONFIG = {"embed_dim": 32,
               "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def import_open_clip():
    """open_clip, importable where its text tokenizer's dependencies are missing (the GPU
    machines have no ftfy or wcwidth, perhaps no regex or tqdm): stand-ins take their place,
    enough for open_clip's import (which builds a default tokenizer) and for the image tower."""
    for name in ("ftfy", "wcwidth", "regex"):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = _stand_in(name)
    if "tqdm" not in sys.modules and importlib.util.find_spec("tqdm") is None:
        for name in ("tqdm", "tqdm.auto"):
            sys.modules[name] = types.ModuleType(name)
            sys.modules[name].tqdm = _NoProgress
    import open_clip

    return open_clip


class _Absent:
    """Anything of a missing module: calls and attributes give more of it, so building open_clip's
    default tokenizer goes through; iterating, as tokenizing would, raises."""

    def __init__(self, module: str):
        self._module = module

    def __call__(self, *args, **kwargs):
        return self

    def __getattr__(self, attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return self

    def __iter__(self):
        raise ModuleNotFoundError(f"{self._module} is not installed (open_clip's text tokenizer needs it)")


def _stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def absent(attribute):
        if attribute.startswith("__"):  # module machinery (inspect, pickle) asks for dunders
            raise AttributeError(attribute)
        return _Absent(name)

    module.__getattr__ = absent
    return module


class _NoProgress:
    """tqdm's stand-in: iterates, shows nothing."""

    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable or ())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, *args, **kwargs):
        pass

    def close(self):
        pass


# --- previews ---------------------------------------------------------------------------------------

def _write_preview(args) -> str:
    import numpy as np
    from PIL import Image

    folder, index = args
    rng = np.random.default_rng(index)
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((448, 336), Image.Resampling.BICUBIC)
    name = f"previews/{index:05d}.webp"
    out = io.BytesIO()
    image.save(out, "WEBP", quality=88, method=4)
    (Path(folder) / name).write_bytes(out.getvalue())
    return name


def make_previews(folder: Path, distinct: int) -> list[str]:
    (folder / "previews").mkdir(parents=True, exist_ok=True)
    with Pool(min(distinct, os.cpu_count() or 1)) as pool:
        return pool.map(_write_preview, [(str(folder), i) for i in range(distinct)])


# --- CPU accounting -----------------------------------------------------------------------------------

def per_core_times() -> list[tuple[float, float]]:
    """(busy, total) jiffies per core, from psutil or /proc/stat."""
    try:
        import psutil

        return [(t.user + t.nice + t.system + t.irq + t.softirq + t.steal,
                 t.user + t.nice + t.system + t.irq + t.softirq + t.steal + t.idle + t.iowait)
                for t in psutil.cpu_times(percpu=True)]
    except ImportError:
        cores = []
        with open("/proc/stat") as stat:
            for line in stat:
                name, *fields = line.split()
                if name.startswith("cpu") and name != "cpu":
                    user, nice, system, idle, iowait, irq, softirq, steal = (float(x) for x in fields[:8])
                    busy = user + nice + system + irq + softirq + steal
                    cores.append((busy, busy + idle + iowait))
        return cores


def busy_shares(before, after) -> list[float]:
    return [round((b1 - b0) / (t1 - t0), 3) if t1 > t0 else 0.0 for (b0, t0), (b1, t1) in zip(before, after)]


# --- the two measurements ----------------------------------------------------------------------------

def build_model(open_clip, arch: str, device: str, tiny: bool):
    import torch

    if tiny:
        config = Path(tempfile.mkdtemp()) / "bench-tiny.json"
        config.write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(config)
        arch = "bench-tiny"
    with torch.device(device):  # random init on the GPU: seconds instead of a minute for ViT-H
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, device=device)
    return model.eval(), preprocess


def aesthetic_backend(model, preprocess, *, read_bytes, device: str, batch_size: int, num_workers: int):
    """The registered laion_aesthetic backend's scoring, on a model built here instead of read from disk."""
    from mlworkers.backends.clip import LaionAestheticBackend
    from mlworkers.backends.clip_models import OpenClipModel, aesthetic_head
    from mlworkers.pipeline import split_normalisation

    class Benchmarked(LaionAestheticBackend):  # not registered: only `load` differs
        def load(self):
            self.loaded = OpenClipModel(model=model, preprocess=preprocess, arch="bench")
            self.model = model
            self.preprocess, self.on_device = split_normalisation(preprocess)
            self.head = aesthetic_head(model.visual.output_dim).to(device).eval()

    return Benchmarked(model_ref="(built in memory)", read_bytes=read_bytes, device=device,
                       parameters={"batch_size": batch_size, "num_workers": num_workers})


def pipeline_images_per_second(backend, keys: list[str], images: int) -> tuple[float, float]:
    from mlworkers.backends.base import Aspect, ImageRef, ScoreRequest

    aspects = [Aspect("aesthetic", "Aesthetic")]
    requests = [ScoreRequest(prompt=f"prompt {p}", aspects=aspects, scale=5,
                             images=[ImageRef(image_id=i, preview_key=keys[i % len(keys)], storage_key="")
                                     for i in range(p * 4, min(p * 4 + 4, images))])
                for p in range(-(-images // 4))]
    backend.score(requests[:max(1, 2 * backend.batch_size // 4)])  # warm-up: kernels, allocator, page cache
    started = time.perf_counter()
    results = backend.score(requests)
    elapsed = time.perf_counter() - started
    failed = [r for r in results if r.failed]
    assert len(results) == images and not failed, failed[:3]
    return images / elapsed, elapsed


def bare_images_per_second(model, *, device: str, batch_size: int, image_size: int, batches: int) -> float:
    import torch

    from mlworkers.weights import autocast_dtype

    pixels = torch.randn(batch_size, 3, image_size, image_size, device=device)
    autocast = (torch.autocast(device_type="cuda", dtype=autocast_dtype(device)) if device.startswith("cuda")
                else torch.autocast(device_type="cpu", enabled=False))
    with torch.inference_mode(), autocast:
        for _ in range(3):
            model.encode_image(pixels)
        _sync(device)
        started = time.perf_counter()
        for _ in range(batches):
            model.encode_image(pixels)
        _sync(device)
    return batches * batch_size / (time.perf_counter() - started)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model, few images, on CPU")
    parser.add_argument("--archs", default="ViT-L-14,ViT-H-14")
    parser.add_argument("--images", type=int, help="images per pipeline run (default 4096; 192 with --cpu-smoke)")
    parser.add_argument("--batch-size", type=int, help="default 128; 16 with --cpu-smoke")
    parser.add_argument("--num-workers", help="comma-separated DataLoader worker counts to measure "
                                              "(default: the backend's default, and all cores but two)")
    args = parser.parse_args()

    import torch

    from mlworkers.pipeline import default_num_workers
    from mlworkers.weights import autocast_dtype

    open_clip = import_open_clip()
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print(json.dumps({"name": "gpu_scoring", "note": "no CUDA device here: running the CPU smoke run instead"}),
              flush=True)
        smoke = True
    device = "cpu" if smoke else "cuda"
    images = args.images or (192 if smoke else 4096)
    batch_size = args.batch_size or (16 if smoke else 128)
    cpus = os.cpu_count() or 1
    worker_counts = ([int(n) for n in args.num_workers.split(",")] if args.num_workers
                     else [2] if smoke else sorted({default_num_workers(), max(1, cpus - 2)}))
    archs = ["tiny"] if smoke else args.archs.split(",")
    folder = Path(tempfile.mkdtemp(prefix="bench-gpu-scoring-"))
    keys = make_previews(folder, min(images, 512))

    def read_bytes(key: str) -> bytes:  # stands for Django storage: bytes by key
        return (folder / key).read_bytes()

    dtype = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype(device)]
    card = "cpu" if smoke else torch.cuda.get_device_name()
    for arch in archs:
        model, preprocess = build_model(open_clip, arch, device, tiny=smoke)
        image_size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
        context = {"arch": arch, "batch": batch_size, "dtype": dtype, "device": card, "images": images,
                   "preview_px": 448, "input_px": image_size}
        bare = bare_images_per_second(model, device=device, batch_size=batch_size, image_size=image_size,
                                      batches=max(3, images // batch_size))
        report("gpu_scoring_bare_forward_images_per_second", bare, "images/s", **context)
        for workers in worker_counts:
            backend = aesthetic_backend(model, preprocess, read_bytes=read_bytes, device=device,
                                        batch_size=batch_size, num_workers=workers)
            children_before, cores_before = os.times(), per_core_times()
            rate, elapsed = pipeline_images_per_second(backend, keys, images)
            children_after, cores_after = os.times(), per_core_times()
            run = dict(context, num_workers=workers)
            report("gpu_scoring_pipeline_images_per_second", rate, "images/s", **run)
            report("gpu_scoring_pipeline_to_bare_ratio", rate / bare, "x", **run)
            if smoke:
                # workers are joined when the DataLoader is exhausted, so their CPU time is in
                # this process's children times by now (the warm-up's workers ended earlier)
                worker_cpu_s = ((children_after.children_user - children_before.children_user)
                                + (children_after.children_system - children_before.children_system))
                report("gpu_scoring_dataloader_workers_cpu_cores", worker_cpu_s / elapsed, "cores", **run,
                       per_core_busy=busy_shares(cores_before, cores_after), cores=cpus,
                       psutil=importlib.util.find_spec("psutil") is not None)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
