from django.contrib import admin

from curation.models import DatasetExport, FilterRun


@admin.register(FilterRun)
class FilterRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "name", "version", "status", "created_at"]
    list_filter = ["status", "project"]
    search_fields = ["name", "project__slug"]
    readonly_fields = [f.name for f in FilterRun._meta.fields]


@admin.register(DatasetExport)
class DatasetExportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "format", "container", "destination", "status", "rows_done", "created_at"]
    list_filter = ["status", "format", "container", "project"]
    search_fields = ["destination", "project__slug"]
    readonly_fields = [f.name for f in DatasetExport._meta.fields]
