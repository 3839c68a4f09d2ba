from django.contrib import admin

from annotation.models import (
    AnnotatorProfile, ArtifactFlag, AspectScore, Comparison, Image, ImportJob, ImportLineError,
    Membership, PersonalRating, PreferenceJudgment, Project, Prompt,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "overlap", "score_scale", "gold_rate", "is_archived", "created_at"]
    list_filter = ["is_archived", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "status", "created_at"]
    list_filter = ["role", "status", "project"]
    search_fields = ["user__username", "project__slug"]
    autocomplete_fields = ["user", "project"]


@admin.register(AnnotatorProfile)
class AnnotatorProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "pseudonym", "consent_at", "age_band", "gender", "nationality"]
    list_filter = ["age_band", "art_experience", "photography_experience"]
    search_fields = ["user__username", "pseudonym", "nationality"]
    readonly_fields = ["pseudonym"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "short_text", "category", "external_id", "created_at"]
    list_filter = ["project", "category"]
    search_fields = ["text", "external_id"]
    readonly_fields = ["text_sha256"]

    @admin.display(description="text")
    def short_text(self, prompt):
        return prompt.text[:80]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "prompt_id", "generator", "seed", "width", "height", "format", "sha256"]
    list_filter = ["project", "generator", "format"]
    search_fields = ["sha256", "prompt__text", "source_uri"]
    raw_id_fields = ["prompt"]


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "prompt_id", "image_a_id", "image_b_id"]
    list_filter = ["project"]
    raw_id_fields = ["prompt", "image_a", "image_b"]
    search_fields = ["prompt__text"]


class JudgmentAdmin(admin.ModelAdmin):
    list_filter = ["source", "project", "is_gold", "created_at"]
    search_fields = ["annotator__username", "machine_annotator__name", "submission__idempotency_key", "rationale"]
    raw_id_fields = ["annotator", "machine_annotator"]
    date_hierarchy = "created_at"


@admin.register(PreferenceJudgment)
class PreferenceJudgmentAdmin(JudgmentAdmin):
    list_display = ["id", "project", "comparison_id", "aspect", "choice", "left_image_id", "sample", "source",
                    "annotator", "machine_annotator", "latency_ms", "created_at"]
    list_filter = JudgmentAdmin.list_filter + ["aspect", "choice"]
    raw_id_fields = JudgmentAdmin.raw_id_fields + ["comparison", "left_image"]


@admin.register(AspectScore)
class AspectScoreAdmin(JudgmentAdmin):
    list_display = ["id", "project", "image_id", "aspect", "value", "source", "annotator", "machine_annotator",
                    "created_at"]
    list_filter = JudgmentAdmin.list_filter + ["aspect"]
    raw_id_fields = JudgmentAdmin.raw_id_fields + ["image"]


@admin.register(PersonalRating)
class PersonalRatingAdmin(JudgmentAdmin):
    list_display = ["id", "project", "image_id", "value", "source", "annotator", "created_at"]
    raw_id_fields = JudgmentAdmin.raw_id_fields + ["image"]


@admin.register(ArtifactFlag)
class ArtifactFlagAdmin(JudgmentAdmin):
    list_display = ["id", "project", "image_id", "has_artifacts", "source", "annotator", "machine_annotator",
                    "created_at"]
    list_filter = JudgmentAdmin.list_filter + ["has_artifacts"]
    raw_id_fields = JudgmentAdmin.raw_id_fields + ["image"]


class ImportLineErrorInline(admin.TabularInline):
    model = ImportLineError
    extra = 0
    can_delete = False
    readonly_fields = ["line", "field", "message"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "lines_done", "lines_total", "images_created", "duplicates",
                    "rejected", "created_by", "created_at"]
    list_filter = ["status", "project"]
    search_fields = ["project__slug", "message"]
    readonly_fields = [f.name for f in ImportJob._meta.fields]
    inlines = [ImportLineErrorInline]
