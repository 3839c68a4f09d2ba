from django.urls import path

from mlworkers import api

urlpatterns = [
    path("machine-annotators/", api.MachineAnnotatorListCreateApi.as_view(), name="machine-annotator-list"),
    path("machine-annotators/catalogue/", api.CatalogueApi.as_view(), name="machine-annotator-catalogue"),
    path("machine-annotators/<int:annotator_id>/", api.MachineAnnotatorDetailApi.as_view(),
         name="machine-annotator-detail"),
    path("machine-backends/", api.BackendListApi.as_view(), name="machine-backend-list"),
    path("projects/<slug:slug>/auto-jobs/", api.AutoJobListCreateApi.as_view(), name="auto-job-list"),
    path("auto-jobs/<int:job_id>/", api.AutoJobDetailApi.as_view(), name="auto-job-detail"),
    path("auto-jobs/<int:job_id>/cancel/", api.AutoJobCancelApi.as_view(), name="auto-job-cancel"),
    path("auto-jobs/<int:job_id>/resume/", api.AutoJobResumeApi.as_view(), name="auto-job-resume"),
    path("auto-jobs/<int:job_id>/failures/", api.AutoJobFailureListApi.as_view(), name="auto-job-failure-list"),
]
