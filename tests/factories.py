import factory
from django.contrib.auth import get_user_model

from annotation.models import Comparison, Image, Membership, Project, Prompt, text_digest


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password("correct horse battery")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda p: p.slug.replace("-", " ").title())


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.ANNOTATOR


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    project = factory.SubFactory(ProjectFactory)
    text = factory.Sequence(lambda n: f"a red circle number {n}")
    text_sha256 = factory.LazyAttribute(lambda p: text_digest(p.text))


class ImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    prompt = factory.SubFactory(PromptFactory)
    project = factory.LazyAttribute(lambda i: i.prompt.project)
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    storage_key = factory.LazyAttribute(lambda i: f"images/{i.sha256[:2]}/{i.sha256}.png")
    preview_key = factory.LazyAttribute(lambda i: f"previews/{i.sha256[:2]}/{i.sha256}.webp")
    format = "PNG"
    width = 64
    height = 64
    size_bytes = 100


class ComparisonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Comparison

    prompt = factory.SubFactory(PromptFactory)
    project = factory.LazyAttribute(lambda c: c.prompt.project)
    image_a = factory.LazyAttribute(lambda c: ImageFactory(prompt=c.prompt))
    image_b = factory.LazyAttribute(lambda c: ImageFactory(prompt=c.prompt))


def prompts_with_all_pairs(project, *, prompts: int, images_per_prompt: int) -> None:
    """`prompts` prompts of `images_per_prompt` images each, every pair of a prompt compared."""
    from itertools import combinations

    for p in range(prompts):
        prompt = PromptFactory(project=project, text=f"prompt {p}")
        images = [ImageFactory(prompt=prompt) for _ in range(images_per_prompt)]
        for image_a, image_b in combinations(images, 2):
            ComparisonFactory(prompt=prompt, image_a=image_a, image_b=image_b)
