from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from annotation import selectors, services
from annotation.models import (
    AnnotatorProfile, ArtifactFlag, AspectScore, Comparison, Image, ImportJob, ImportLineError,
    Membership, PersonalRating, PreferenceJudgment, Project, Prompt, StudyLink, StudyParticipant,
)


def _refusal_text(exc: ValidationError | PermissionDenied) -> str:
    return "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)


class KeepsJudgmentsAdmin(admin.ModelAdmin):
    """Deleting anything a judgment rests on is refused, naming how many judgments are in the way
    (counted, not listed: a project may hold millions) and what to do instead (`protected_hint`)."""

    protected_hint = ""

    def get_deleted_objects(self, objs, request):
        items = objs if hasattr(objs, "model") else self.model.objects.filter(pk__in=[o.pk for o in objs])
        resting = selectors.judgments_resting_on(items=items)
        if resting:
            return [], {}, set(), [f"{n} {kind} (raw judgments are never deleted)" for kind, n in resting.items()]
        return super().get_deleted_objects(objs, request)

    def delete_view(self, request, object_id, extra_context=None):
        return super().delete_view(request, object_id, {**(extra_context or {}), "protected_hint": self.protected_hint})


class HidingAdmin(KeepsJudgmentsAdmin):
    """Prompts, images and comparisons are hidden instead of deleted once judged."""

    actions = ["hide", "show"]
    protected_hint = ("Hide it instead (the \"Hide\" action of the list): a hidden item gets no more work and keeps "
                      "its judgments.")

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "hidden_at"]  # through the actions, which record it

    @admin.action(description="Hide the selected (no more work; judgments kept)")
    def hide(self, request, queryset):
        hidden = services.items_hide(items=queryset, actor=request.user)
        self.message_user(request, f"{hidden} hidden (with what is built on them); nothing was deleted.")

    @admin.action(description="Show the selected again")
    def show(self, request, queryset):
        shown = services.items_hide(items=queryset, actor=request.user, hidden=False)
        self.message_user(request, f"{shown} shown again.")


class MembershipInline(admin.TabularInline):
    """Members as they are; roles are changed on the membership's own page, through the services."""

    model = Membership
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = ["user", "role", "status", "status_reason", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Project)
class ProjectAdmin(KeepsJudgmentsAdmin):
    list_display = ["slug", "name", "overlap", "score_scale", "gold_rate", "is_archived", "created_at"]
    list_filter = ["is_archived", "created_at"]
    search_fields = ["slug", "name"]
    readonly_fields = ["is_archived"]  # through the actions, which record it
    inlines = [MembershipInline]
    actions = ["archive", "unarchive"]
    protected_hint = ("Archive it instead (read-only, nothing lost), or, as a superuser, use \"Delete with its "
                      "judgments\" on its page and type its slug.")

    @admin.action(description="Archive the selected projects (read-only)")
    def archive(self, request, queryset):
        for project in queryset:
            services.project_update(project=project, actor=request.user, is_archived=True)
        self.message_user(request, f"{queryset.count()} project(s) archived.")

    @admin.action(description="Unarchive the selected projects")
    def unarchive(self, request, queryset):
        for project in queryset:
            services.project_update(project=project, actor=request.user, is_archived=False)
        self.message_user(request, f"{queryset.count()} project(s) unarchived.")

    def get_urls(self):
        return [path("<path:object_id>/delete-with-judgments/",
                     self.admin_site.admin_view(self.delete_with_judgments_view),
                     name="annotation_project_delete_with_judgments"), *super().get_urls()]

    def delete_with_judgments_view(self, request, object_id):
        """The one way to delete a project that holds judgments: a superuser types its slug."""
        if not request.user.is_superuser:
            raise PermissionDenied("Only a platform superuser may delete a project with its judgments.")
        project = get_object_or_404(Project, pk=object_id)
        error = ""
        if request.method == "POST":
            try:
                counts = services.project_delete(project=project, actor=request.user,
                                                 confirmation=request.POST.get("confirmation", ""))
            except ValidationError as exc:
                error = _refusal_text(exc)
            else:
                gone = ", ".join(f"{n} {kind}" for kind, n in counts.items())
                self.message_user(request, f"Project {project.slug!r} deleted with its judgments ({gone}); the "
                                           f"audit log keeps the deletion.")
                return HttpResponseRedirect(reverse("admin:annotation_project_changelist"))
        return TemplateResponse(request, "admin/annotation/project/delete_with_judgments.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "original": project, "title":
            f"Delete project {project.slug} with its judgments", "error": error,
            "judgments": selectors.judgments_resting_on(items=Project.objects.filter(pk=project.pk)),
        })


class RefusalsAsMessagesAdmin(admin.ModelAdmin):
    """A refusal of the services when a form is posted (a rule, not a bad form) shows as an error
    on the page it came from, with nothing saved, instead of a server error. (The admin's own
    PermissionDenied on a GET stays a 403.)"""

    def _refusals_as_messages(self, request, view):
        try:
            return view()
        except (ValidationError, PermissionDenied) as exc:
            if request.method != "POST":
                raise
            self.message_user(request, _refusal_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return self._refusals_as_messages(
            request, lambda: super(RefusalsAsMessagesAdmin, self).changeform_view(request, object_id, form_url,
                                                                                 extra_context))

    def delete_view(self, request, object_id, extra_context=None):
        return self._refusals_as_messages(
            request, lambda: super(RefusalsAsMessagesAdmin, self).delete_view(request, object_id, extra_context))


@admin.register(Membership)
class MembershipAdmin(RefusalsAsMessagesAdmin):
    """Roles change through `membership_set` / `membership_remove`, under the same rules as the API
    (admins are the project admins' to change, the last one stays); suspension through the API."""

    list_display = ["user", "project", "role", "status", "created_at"]
    list_filter = ["role", "status", "project"]
    search_fields = ["user__username", "project__slug"]
    autocomplete_fields = ["user", "project"]
    actions = []  # one member at a time, each through the rules

    def get_readonly_fields(self, request, obj=None):
        return ["status", "status_reason", "status_changed_at"] + (["project", "user"] if obj else [])

    def save_model(self, request, obj, form, change):
        saved = services.membership_set(project=obj.project, user=obj.user, role=obj.role, actor=request.user)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.membership_remove(project=obj.project, user=obj.user, actor=request.user)


@admin.register(AnnotatorProfile)
class AnnotatorProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "pseudonym", "consent_at", "age_band", "gender", "nationality"]
    list_filter = ["age_band", "art_experience", "photography_experience"]
    search_fields = ["user__username", "pseudonym", "nationality"]
    readonly_fields = ["pseudonym"]


@admin.register(Prompt)
class PromptAdmin(HidingAdmin):
    list_display = ["id", "project", "short_text", "category", "external_id", "hidden_at", "created_at"]
    list_filter = ["project", "category", ("hidden_at", admin.EmptyFieldListFilter)]
    search_fields = ["text", "external_id"]
    readonly_fields = ["text_sha256"]

    @admin.display(description="text")
    def short_text(self, prompt):
        return prompt.text[:80]


@admin.register(Image)
class ImageAdmin(HidingAdmin):
    list_display = ["id", "project", "prompt_id", "generator", "seed", "width", "height", "format", "sha256",
                    "hidden_at"]
    list_filter = ["project", "generator", "format", ("hidden_at", admin.EmptyFieldListFilter)]
    search_fields = ["sha256", "prompt__text", "source_uri"]
    raw_id_fields = ["prompt"]


@admin.register(Comparison)
class ComparisonAdmin(HidingAdmin):
    list_display = ["id", "project", "prompt_id", "image_a_id", "image_b_id", "hidden_at"]
    list_filter = ["project", ("hidden_at", admin.EmptyFieldListFilter)]
    raw_id_fields = ["prompt", "image_a", "image_b"]
    search_fields = ["prompt__text"]


class JudgmentAdmin(admin.ModelAdmin):
    list_filter = ["source", "project", "is_gold", "created_at"]
    search_fields = ["annotator__username", "machine_annotator__name", "submission__idempotency_key", "rationale"]
    raw_id_fields = ["annotator", "machine_annotator"]
    date_hierarchy = "created_at"

    def has_delete_permission(self, request, obj=None):
        return False  # raw judgments are never deleted (a project's go only with it, confirmed)


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


class StudyRecordAdmin(admin.ModelAdmin):
    """Study links and participants as they are: they are made and changed on the members page and
    the link's page (or the API), through `annotation.studies`, which audits each change."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(StudyLink)
class StudyLinkAdmin(StudyRecordAdmin):
    list_display = ["id", "project", "task_type", "platform", "quota", "is_active", "created_by", "created_at"]
    list_filter = ["is_active", "platform", "project"]


@admin.register(StudyParticipant)
class StudyParticipantAdmin(StudyRecordAdmin):
    list_display = ["id", "link", "participant_id", "user", "started_at", "completed_at", "rejected_at"]
    list_filter = ["link__project"]
    search_fields = ["participant_id", "user__username"]
