from django.urls import path

from curation import api

urlpatterns = [
    path("projects/<slug:slug>/filter-runs/", api.FilterRunListCreateApi.as_view(), name="filter-run-list"),
    path("filter-runs/<int:run_id>/", api.FilterRunDetailApi.as_view(), name="filter-run-detail"),
    path("filter-runs/<int:run_id>/verdicts/", api.FilterRunVerdictListApi.as_view(), name="filter-run-verdict-list"),
]
