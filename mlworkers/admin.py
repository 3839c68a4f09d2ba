from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from annotation.models import MachineAnnotator
from mlworkers import catalogue as known_judges
from mlworkers import services
from mlworkers.backends.base import backend_names
from mlworkers.models import AutoAnnotationFailure, AutoAnnotationJob


def _backend_choices():
    return [(name, name) for name in backend_names()]


ANNOTATOR_FIELDS = ["name", "backend", "model_ref", "parameters", "prompt_template", "is_active"]


class MachineAnnotatorForm(forms.ModelForm):
    """Checked as the API checks (`services.machine_annotator_check`): what no job could run is
    refused here, by field. The admin checks a form inside its own transaction, so the Hub is
    asked there (a few seconds at most, holding no row lock)."""

    catalogue = forms.ChoiceField(
        required=False, choices=[("", "---------")] + [(e.key, e.label) for e in known_judges.ENTRIES.values()],
        help_text="A known judge: fills the backend, model reference and parameters left empty (parameters given "
                  "go over the entry's). See docs/model-hub.md for each entry's files, licence and formula.")
    preset = forms.ChoiceField(
        required=False, choices=[("", "---------")] + [(p.key, p.label) for p in known_judges.PRESETS.values()],
        help_text="MLLM judges: a prompt template for score jobs, used when the prompt template is left empty.")
    backend = forms.ChoiceField(choices=_backend_choices, required=False)

    class Meta:
        model = MachineAnnotator
        fields = ["catalogue", "preset", *ANNOTATOR_FIELDS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # the catalogue makes new annotators; an existing one is edited field by field
            del self.fields["catalogue"], self.fields["preset"]
        self.fields["model_ref"].required = self.fields["name"].required = False

    def clean(self):
        cleaned = super().clean()
        self.checked = None
        if cleaned.get("catalogue"):
            try:
                cleaned.update(known_judges.catalogue_fields(
                    key=cleaned["catalogue"], model_ref=cleaned.get("model_ref") or "",
                    parameters=cleaned.get("parameters") or {}, preset=cleaned.get("preset") or "",
                    prompt_template=cleaned.get("prompt_template") or ""))
            except ValidationError as exc:
                raise ValidationError(exc.message_dict) from None
        elif cleaned.get("preset"):
            if cleaned.get("backend") not in known_judges.PRESET_BACKENDS:
                self.add_error("preset", f"prompt presets are for MLLM judges, not {cleaned.get('backend') or 'none'}")
            elif not cleaned.get("prompt_template"):
                cleaned["prompt_template"] = known_judges.PRESETS[cleaned["preset"]].template
        if cleaned.get("catalogue") and not cleaned.get("name"):
            cleaned["name"] = known_judges.ENTRIES[cleaned["catalogue"]].label
        if not cleaned.get("name") and "name" not in self.errors:
            self.add_error("name", "give the annotator a name")
        if not cleaned.get("backend") and "backend" not in self.errors:
            self.add_error("backend", "choose a backend, or a catalogue entry")
        if any(name in self.errors for name in ("backend", "model_ref", "parameters")):
            return cleaned
        try:
            self.checked = services.machine_annotator_check(
                backend=cleaned["backend"], model_ref=cleaned["model_ref"], parameters=cleaned.get("parameters") or {},
                known_commits=self.instance.model_commits if self.instance.pk else None)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict) from None
        return cleaned


@admin.register(MachineAnnotator)
class MachineAnnotatorAdmin(admin.ModelAdmin):
    form = MachineAnnotatorForm
    list_display = ["name", "backend", "version", "model_ref", "is_active", "created_at"]
    list_filter = ["backend", "is_active"]
    search_fields = ["name", "model_ref"]
    readonly_fields = ["model_commits", "version"]
    actions = ["refresh_revisions"]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return [f for f in fields if f not in ("catalogue", "preset")] if obj is not None else fields

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in ANNOTATOR_FIELDS}
        fields["parameters"] = fields["parameters"] or {}
        if change:
            services.machine_annotator_update(annotator=obj, checked=form.checked, **fields)
        else:
            saved = services.machine_annotator_create(created_by=request.user, checked=form.checked, **fields)
            obj.pk = saved.pk
            obj.refresh_from_db()
        unresolved = services.machine_annotator_unresolved(obj)
        if unresolved:
            self.message_user(request, f"The model hub could not be asked about {', '.join(unresolved)}: its "
                                       f"commit is resolved when a job starts.", messages.WARNING)

    @admin.action(description="Resolve Hub references anew (follow branches that moved)")
    def refresh_revisions(self, request, queryset):
        for annotator in queryset:
            before = annotator.version
            try:
                annotator = services.machine_annotator_update(annotator=annotator, refresh_revisions=True)
            except ValidationError as exc:
                self.message_user(request, f"{annotator.name}: {'; '.join(exc.messages)}", messages.ERROR)
                continue
            changed = "a new version" if annotator.version != before else "unchanged"
            self.message_user(request, f"{annotator.name}: {changed} ({annotator.version}).")


class FailureInline(admin.TabularInline):
    model = AutoAnnotationFailure
    extra = 0
    can_delete = False
    fields = ["image", "comparison", "first_image", "sample", "aspects", "error"]
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
