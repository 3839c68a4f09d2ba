from django.contrib import admin

from curation.models import FilterRun


@admin.register(FilterRun)
class FilterRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "name", "version", "status", "created_at"]
    list_filter = ["status", "project"]
    search_fields = ["name", "project__slug"]
    readonly_fields = [f.name for f in FilterRun._meta.fields]
