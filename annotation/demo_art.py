"""Procedural demo content: prompts about coloured shapes and images of them, drawn with Pillow.

Nothing is downloaded. Every prompt names shapes, colours and counts ("three red circles on a
blue background") and gets one image from each of four pretend generators, each with its own
drawing style. Most images show what the prompt asks for; some are deliberately wrong (a wrong
count, colour, shape or placement) and some carry a generation artifact (noise blotches, a
smeared duplicate of a region, a shape cut off by the frame). Each image records that ground
truth in its `meta`, so curation demos can check what filters and judges find:

- `faithful`: whether what is drawn matches the prompt (prompt following);
- `mistake`: how it does not (`wrong_count`, `wrong_colour`, `wrong_shape`, `wrong_relation`);
- `artifact`: the fidelity flaw drawn into it, if any (`noise_blotch`, `smear`, `cutoff`).

An artifact never changes what the scene shows, so an artifacted image can still be faithful.
Everything derives from one seed: the same seed gives the same prompts and the same PNG bytes.
"""
import json
import os
import random
from dataclasses import dataclass
from math import cos, pi, sin
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 512
SUPERSAMPLE = 2  # shapes are drawn at twice the size and reduced, for smooth edges
PROMPT_COUNT = 50
MANIFEST_NAME = "manifest.jsonl"

COLOURS = {
    "red": (214, 39, 40), "blue": (31, 90, 200), "green": (44, 160, 44), "yellow": (245, 205, 30),
    "purple": (128, 60, 170), "orange": (250, 127, 14), "pink": (240, 120, 175), "black": (25, 25, 25),
    "white": (248, 248, 248), "grey": (135, 135, 135),
}
SHAPE_COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "black", "white"]
BACKGROUNDS = ["white", "black", "grey", "blue", "yellow", "green", "pink"]
SHAPES = ["circle", "square", "triangle", "star", "hexagon"]
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
RELATIONS = ["to the left of", "above"]
# Colours too close to each other to tell apart reliably at a glance.
_CLASHES = {frozenset(p) for p in [("red", "orange"), ("red", "pink"), ("yellow", "orange"), ("black", "grey"),
                                   ("white", "grey"), ("purple", "blue"), ("pink", "orange")]}


@dataclass(frozen=True)
class GeneratorStyle:
    name: str
    mistake_rate: float
    artifact_rate: float
    outline: bool = False
    soft: bool = False
    gradient: bool = False
    shadow: bool = False
    gloss: bool = False


# One drawing style per pretend generator; the weaker "models" make more mistakes and artifacts,
# so per-generator win rates in a demo have something to show.
GENERATORS = [
    GeneratorStyle("demo-sd15", mistake_rate=0.25, artifact_rate=0.20, soft=True),
    GeneratorStyle("demo-sdxl", mistake_rate=0.15, artifact_rate=0.12, outline=True),
    GeneratorStyle("demo-flux", mistake_rate=0.06, artifact_rate=0.05, gradient=True, shadow=True),
    GeneratorStyle("demo-dalle", mistake_rate=0.12, artifact_rate=0.08, gloss=True),
]
_STYLES = {g.name: g for g in GENERATORS}
ARTIFACTS = ["noise_blotch", "smear", "cutoff"]


@dataclass(frozen=True)
class ShapeGroup:
    count: int
    colour: str
    shape: str

    def phrase(self, *, numeral_for_one: bool = False) -> str:
        if self.count == 1:
            article = "one" if numeral_for_one else ("an" if self.colour[0] in "aeiou" else "a")
            return f"{article} {self.colour} {self.shape}"
        return f"{COUNT_WORDS[self.count]} {self.colour} {self.shape}s"


@dataclass(frozen=True)
class Scene:
    """What an image shows: shape groups on a background; with `relation`, the first group
    stands in that relation ("to the left of", "above") to the second."""

    background: str
    groups: tuple[ShapeGroup, ...]
    relation: str | None = None

    def describe(self) -> str:
        numeral = len(self.groups) > 1 and self.relation is None and any(g.count > 1 for g in self.groups)
        phrases = [g.phrase(numeral_for_one=numeral) for g in self.groups]
        joiner = f" {self.relation} " if self.relation else " and "
        return f"{joiner.join(phrases)} on a {self.background} background"


@dataclass(frozen=True)
class DemoImage:
    generator: str
    seed: int
    drawn: Scene
    mistake: str | None = None
    artifact: str | None = None

    @property
    def faithful(self) -> bool:
        return self.mistake is None

    @property
    def meta(self) -> dict:
        return {"faithful": self.faithful, "mistake": self.mistake, "artifact": self.artifact,
                "drawn": self.drawn.describe()}


@dataclass(frozen=True)
class DemoPrompt:
    text: str
    category: str
    scene: Scene
    images: tuple[DemoImage, ...]
    external_id: str


def demo_items(seed: int = 7) -> list[DemoPrompt]:
    """About fifty prompts (counting, colour, composition), each with one planned image per
    generator; the same seed always gives the same list."""
    rng = random.Random(seed)
    prompts: list[DemoPrompt] = []
    texts: set[str] = set()
    categories = ["counting", "colour", "composition"]
    while len(prompts) < PROMPT_COUNT:
        category = categories[len(prompts) % len(categories)]
        scene = _SCENE_MAKERS[category](rng)
        text = _phrase_prompt(scene, rng)
        if text in texts:
            continue
        texts.add(text)
        images = _plan_images(scene, category, rng)
        prompts.append(DemoPrompt(text=text, category=category, scene=scene, images=images,
                                  external_id=f"demo-{len(prompts):03d}"))
    return prompts


def _pick_colours(rng: random.Random, background: str, n: int) -> list[str]:
    chosen: list[str] = []
    for colour in rng.sample(SHAPE_COLOURS, len(SHAPE_COLOURS)):
        if colour == background or frozenset((colour, background)) in _CLASHES:
            continue
        if any(frozenset((colour, c)) in _CLASHES for c in chosen):
            continue
        chosen.append(colour)
        if len(chosen) == n:
            return chosen
    raise AssertionError("the palette always has enough distinct colours")


def _counting_scene(rng: random.Random) -> Scene:
    background = rng.choice(BACKGROUNDS)
    (colour,) = _pick_colours(rng, background, 1)
    return Scene(background, (ShapeGroup(rng.randint(2, 5), colour, rng.choice(SHAPES)),))


def _colour_scene(rng: random.Random) -> Scene:
    background = rng.choice(BACKGROUNDS)
    c1, c2 = _pick_colours(rng, background, 2)
    s1, s2 = rng.sample(SHAPES, 2)
    return Scene(background, (ShapeGroup(1, c1, s1), ShapeGroup(1, c2, s2)))


def _composition_scene(rng: random.Random) -> Scene:
    background = rng.choice(BACKGROUNDS)
    c1, c2 = _pick_colours(rng, background, 2)
    s1, s2 = rng.sample(SHAPES, 2)
    if rng.random() < 0.5:
        return Scene(background, (ShapeGroup(1, c1, s1), ShapeGroup(1, c2, s2)), relation=rng.choice(RELATIONS))
    n1, n2 = rng.choice([(2, 1), (1, 2), (3, 1), (2, 2), (1, 3), (3, 2)])
    return Scene(background, (ShapeGroup(n1, c1, s1), ShapeGroup(n2, c2, s2)))


_SCENE_MAKERS = {"counting": _counting_scene, "colour": _colour_scene, "composition": _composition_scene}


def _phrase_prompt(scene: Scene, rng: random.Random) -> str:
    text = scene.describe()
    roll = rng.random()
    if roll < 0.2:
        # "... on a white background" -> "... on white", as people write it
        return text.replace(f" on a {scene.background} background", f" on {scene.background}")
    if roll < 0.3 and scene.relation is None:
        shapes = text.split(" on a ")[0]
        return f"a {scene.background} background with {shapes}"
    return text


def _plan_images(scene: Scene, category: str, rng: random.Random) -> tuple[DemoImage, ...]:
    plans = []
    for style in GENERATORS:
        roll = rng.random()
        if roll < style.mistake_rate:
            plans.append(("mistake", style))
        elif roll < style.mistake_rate + style.artifact_rate:
            plans.append(("artifact", style))
        else:
            plans.append(("clean", style))
    if all(kind != "clean" for kind, _ in plans):  # every prompt keeps at least one good image
        plans[2] = ("clean", plans[2][1])
    images = []
    for kind, style in plans:
        seed = rng.randrange(2**31)
        if kind == "mistake":
            mistake, drawn = _make_mistake(scene, category, rng)
            images.append(DemoImage(style.name, seed, drawn, mistake=mistake))
        elif kind == "artifact":
            images.append(DemoImage(style.name, seed, scene, artifact=rng.choice(ARTIFACTS)))
        else:
            images.append(DemoImage(style.name, seed, scene))
    return tuple(images)


def _make_mistake(scene: Scene, category: str, rng: random.Random) -> tuple[str, Scene]:
    """A scene that misses the prompt in one way typical for its category."""
    groups = list(scene.groups)
    if scene.relation and rng.random() < 0.6:
        return "wrong_relation", Scene(scene.background, (groups[1], groups[0]), scene.relation)
    kind = {"counting": ["wrong_count"] * 3 + ["wrong_colour"],
            "colour": ["wrong_colour"] * 3 + ["wrong_shape"],
            "composition": ["wrong_count", "wrong_colour", "wrong_shape"]}[category]
    mistake = rng.choice(kind)
    i = rng.randrange(len(groups))
    g = groups[i]
    if mistake == "wrong_count":
        count = g.count + rng.choice([-1, 1]) if g.count > 1 else g.count + 1
        groups[i] = ShapeGroup(count, g.colour, g.shape)
    elif mistake == "wrong_colour":
        if len(groups) == 2 and rng.random() < 0.5:  # attribute leakage: the colours swap
            a, b = groups
            groups = [ShapeGroup(a.count, b.colour, a.shape), ShapeGroup(b.count, a.colour, b.shape)]
        else:
            used = {x.colour for x in groups}
            options = [c for c in SHAPE_COLOURS if c not in used and c != scene.background
                       and frozenset((c, scene.background)) not in _CLASHES]
            groups[i] = ShapeGroup(g.count, rng.choice(options), g.shape)
    else:
        used = {x.shape for x in groups}
        groups[i] = ShapeGroup(g.count, g.colour, rng.choice([s for s in SHAPES if s not in used]))
    return mistake, Scene(scene.background, tuple(groups), scene.relation)


# --- drawing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Placed:
    shape: str
    colour: tuple[int, int, int]
    x: float
    y: float
    r: float
    angle: float
    group: int = 0


def draw_image(prompt_spec: DemoPrompt, variant: int, rng: random.Random) -> Image.Image:
    """Draw image `variant` of `prompt_spec` as a 512x512 RGB picture; positions, sizes and
    shades come from `rng`, so a generator seeded alike draws the same pixels."""
    planned = prompt_spec.images[variant]
    style = _STYLES[planned.generator]
    placed = _place_shapes(planned.drawn, rng)
    if planned.artifact == "cutoff":
        placed = _push_off_canvas(placed, planned.drawn.relation, rng)

    canvas = _background(planned.drawn.background, style, rng)
    if style.shadow:
        canvas = _with_shadow(canvas, placed)
    big = canvas.resize((SIZE * SUPERSAMPLE, SIZE * SUPERSAMPLE), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(big)
    for shape in placed:
        _draw_shape(draw, shape, style, scale=SUPERSAMPLE)
    image = big.reduce(SUPERSAMPLE)
    if style.soft:
        image = image.filter(ImageFilter.GaussianBlur(1.3))

    if planned.artifact == "noise_blotch":
        image = _noise_blotches(image, rng)
    elif planned.artifact == "smear":
        image = _smear(image, placed, rng)
    return image


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 14) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)


def _place_shapes(scene: Scene, rng: random.Random) -> list[_Placed]:
    total = sum(g.count for g in scene.groups)
    r_max = {1: 95, 2: 85, 3: 72, 4: 64, 5: 58, 6: 52}.get(total, 48)
    regions = _regions(scene, rng)
    placed: list[_Placed] = []
    for index, (group, (x0, y0, x1, y1)) in enumerate(zip(scene.groups, regions)):
        colour = _jitter(COLOURS[group.colour], rng)
        for _ in range(group.count):
            for _attempt in range(200):
                r = rng.uniform(r_max * 0.6, r_max)
                if x1 - x0 < 2 * r or y1 - y0 < 2 * r:
                    r = min(x1 - x0, y1 - y0) / 2 - 1
                x, y = rng.uniform(x0 + r, x1 - r), rng.uniform(y0 + r, y1 - r)
                if all((x - p.x) ** 2 + (y - p.y) ** 2 > (r + p.r + 8) ** 2 for p in placed):
                    break
                r_max *= 0.98  # crowded: shrink a little and try again
            placed.append(_Placed(group.shape, colour, x, y, r, rng.uniform(-18, 18), index))
    return placed


def _regions(scene: Scene, rng: random.Random) -> list[tuple[float, float, float, float]]:
    """Where each group may go: the whole canvas, or for a relation the two halves it names."""
    m = 16
    whole = (m, m, SIZE - m, SIZE - m)
    if scene.relation is None:
        return [whole] * len(scene.groups)
    gap = rng.uniform(10, 40)
    mid = SIZE / 2
    if scene.relation == "to the left of":
        return [(m, m, mid - gap / 2, SIZE - m), (mid + gap / 2, m, SIZE - m, SIZE - m)]
    return [(m, m, SIZE - m, mid - gap / 2), (m, mid + gap / 2, SIZE - m, SIZE - m)]


def _push_off_canvas(placed: list[_Placed], relation: str | None, rng: random.Random) -> list[_Placed]:
    """Move one shape against an edge so the frame cuts it; never across to the other side of
    a relation, which would make the image unfaithful as well."""
    i = rng.randrange(len(placed))
    p = placed[i]
    sides = ["left", "right", "top", "bottom"]
    if relation is not None:
        far = {"to the left of": ["right", "left"], "above": ["bottom", "top"]}[relation]
        sides.remove(far[p.group])
    side = rng.choice(sides)
    inside = p.r * rng.uniform(0.45, 0.7)  # how much of the shape stays in the frame
    x, y = p.x, p.y
    if side == "left":
        x = inside - p.r
    elif side == "right":
        x = SIZE - inside + p.r
    elif side == "top":
        y = inside - p.r
    else:
        y = SIZE - inside + p.r
    out = list(placed)
    out[i] = _Placed(p.shape, p.colour, x, y, p.r, p.angle, p.group)
    return out


def _background(name: str, style: GeneratorStyle, rng: random.Random) -> Image.Image:
    base = _jitter(COLOURS[name], rng, 8)
    if not style.gradient:
        return Image.new("RGB", (SIZE, SIZE), base)
    light = tuple(min(255, c + 40) for c in base)
    dark = tuple(max(0, c - 40) for c in base)
    mask = Image.linear_gradient("L").resize((SIZE, SIZE))
    return Image.composite(Image.new("RGB", (SIZE, SIZE), dark), Image.new("RGB", (SIZE, SIZE), light), mask)


def _with_shadow(canvas: Image.Image, placed: list[_Placed]) -> Image.Image:
    mask = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(mask)
    for p in placed:
        draw.polygon(_outline_points(_Placed(p.shape, p.colour, p.x + 10, p.y + 12, p.r, p.angle)), fill=110)
    mask = mask.filter(ImageFilter.GaussianBlur(9))
    return Image.composite(Image.new("RGB", (SIZE, SIZE), (0, 0, 0)), canvas, mask)


def _outline_points(p: _Placed, scale: float = 1.0) -> list[tuple[float, float]]:
    x, y, r, a = p.x * scale, p.y * scale, p.r * scale, p.angle * pi / 180
    if p.shape == "circle":
        corners, radii, offset = 72, [r], 0.0
    elif p.shape == "square":
        corners, radii, offset = 4, [r], pi / 4
    elif p.shape == "triangle":
        corners, radii, offset = 3, [r], -pi / 2
    elif p.shape == "hexagon":
        corners, radii, offset = 6, [r], 0.0
    else:  # star
        corners, radii, offset = 10, [r, r * 0.45], -pi / 2
    return [(x + radii[k % len(radii)] * cos(offset + a + 2 * pi * k / corners),
             y + radii[k % len(radii)] * sin(offset + a + 2 * pi * k / corners)) for k in range(corners)]


def _draw_shape(draw: ImageDraw.ImageDraw, p: _Placed, style: GeneratorStyle, scale: int) -> None:
    points = _outline_points(p, scale)
    if style.outline:
        edge = tuple(int(c * 0.35) for c in p.colour)
        draw.polygon(points, fill=p.colour, outline=edge, width=4 * scale)
    else:
        draw.polygon(points, fill=p.colour)
    if style.gloss:
        shine = tuple(min(255, c + 70) for c in p.colour)
        inner = _Placed(p.shape, shine, p.x - p.r * 0.22, p.y - p.r * 0.22, p.r * 0.3, p.angle)
        draw.polygon(_outline_points(inner, scale), fill=shine)


def _noise_blotches(image: Image.Image, rng: random.Random) -> Image.Image:
    image = image.copy()
    for _ in range(rng.randint(1, 3)):
        w, h = rng.randint(70, 150), rng.randint(60, 130)
        x, y = rng.randint(0, SIZE - w), rng.randint(0, SIZE - h)
        noise = Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))
        mask = Image.new("L", (w, h), 0)
        ImageDraw.Draw(mask).ellipse((0, 0, w - 1, h - 1), fill=rng.randint(170, 235))
        image.paste(noise, (x, y), mask.filter(ImageFilter.GaussianBlur(6)))
    return image


def _smear(image: Image.Image, placed: list[_Placed], rng: random.Random) -> Image.Image:
    """Copy the region around one shape a little aside, smeared along the shift: the ghosted,
    duplicated look of a failed generation."""
    p = rng.choice(placed)
    box = tuple(int(v) for v in (max(0, p.x - p.r * 1.2), max(0, p.y - p.r * 1.2),
                                 min(SIZE, p.x + p.r * 1.2), min(SIZE, p.y + p.r * 1.2)))
    if box[2] - box[0] < 8 or box[3] - box[1] < 8:
        box = (SIZE // 4, SIZE // 4, 3 * SIZE // 4, 3 * SIZE // 4)
    region = image.crop(box).filter(ImageFilter.BoxBlur(rng.randint(3, 7)))
    dx, dy = rng.randint(25, 60) * rng.choice([-1, 1]), rng.randint(-25, 25)
    mask = Image.new("L", region.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, region.width - 1, region.height - 1), fill=200)
    out = image.copy()
    out.paste(region, (box[0] + dx, box[1] + dy), mask.filter(ImageFilter.GaussianBlur(8)))
    return out


# --- files ----------------------------------------------------------------------------------

def image_relpath(index: int, variant: int, generator: str) -> str:
    return f"images/p{index:03d}-{variant}-{generator}.png"


def write_demo_manifest(out_dir: Path, seed: int = 7) -> Path:
    """Draw every demo image into `out_dir/images/` as PNG and write `out_dir/manifest.jsonl`
    (one line per image, paths relative to `out_dir`, as `importing.parse_line` reads them).

    The manifest is written last and renamed into place, so its presence means the images
    beside it are complete. Returns the manifest's path.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, item in enumerate(demo_items(seed)):
        for variant, planned in enumerate(item.images):
            rel = image_relpath(index, variant, planned.generator)
            image = draw_image(item, variant, random.Random(planned.seed))
            image.save(out_dir / rel, "PNG")
            lines.append(json.dumps({
                "prompt": item.text, "image": rel, "generator": planned.generator, "seed": planned.seed,
                "category": item.category, "external_id": item.external_id, "meta": planned.meta,
            }, sort_keys=True))
    manifest = out_dir / MANIFEST_NAME
    partial = out_dir / (MANIFEST_NAME + ".partial")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(partial, manifest)
    return manifest
