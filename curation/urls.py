from django.urls import path

from curation import api
from curation.exports import api as export_api

urlpatterns = [
    path("projects/<slug:slug>/filter-runs/", api.FilterRunListCreateApi.as_view(), name="filter-run-list"),
    path("filter-runs/<int:run_id>/", api.FilterRunDetailApi.as_view(), name="filter-run-detail"),
    path("filter-runs/<int:run_id>/cancel/", api.FilterRunCancelApi.as_view(), name="filter-run-cancel"),
    path("filter-runs/<int:run_id>/verdicts/", api.FilterRunVerdictListApi.as_view(), name="filter-run-verdict-list"),
    path("projects/<slug:slug>/exports/", export_api.DatasetExportListCreateApi.as_view(), name="export-list"),
    path("exports/<int:export_id>/", export_api.DatasetExportDetailApi.as_view(), name="export-detail"),
    path("exports/<int:export_id>/cancel/", export_api.DatasetExportCancelApi.as_view(), name="export-cancel"),
    path("exports/<int:export_id>/archive/", export_api.DatasetExportArchiveApi.as_view(), name="export-archive"),
    path("exports/<int:export_id>/files/<path:path>", export_api.DatasetExportFileApi.as_view(), name="export-file"),
]
