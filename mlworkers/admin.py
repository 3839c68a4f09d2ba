from django.contrib import admin

from annotation.models import MachineAnnotator
from mlworkers.models import AutoAnnotationFailure, AutoAnnotationJob
from mlworkers.services import machine_annotator_version


@admin.register(MachineAnnotator)
class MachineAnnotatorAdmin(admin.ModelAdmin):
    list_display = ["name", "backend", "version", "model_ref", "is_active", "created_at"]
    list_filter = ["backend", "is_active"]
    search_fields = ["name", "model_ref"]
    readonly_fields = ["version"]

    def save_model(self, request, obj, form, change):
        obj.version = machine_annotator_version(backend=obj.backend, model_ref=obj.model_ref,
                                                parameters=obj.parameters, prompt_template=obj.prompt_template)
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class FailureInline(admin.TabularInline):
    model = AutoAnnotationFailure
    extra = 0
    can_delete = False
    fields = ["image", "comparison", "first_image", "sample", "aspect", "error"]
    readonly_fields = fields
    show_change_link = False


@admin.register(AutoAnnotationJob)
class AutoAnnotationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "machine_annotator", "kind", "status", "items_done", "items_failed",
                    "items_total", "created_at"]
    list_filter = ["status", "kind", "project", "machine_annotator"]
    search_fields = ["project__slug", "machine_annotator__name", "message"]
    readonly_fields = [f.name for f in AutoAnnotationJob._meta.fields]
    inlines = [FailureInline]
