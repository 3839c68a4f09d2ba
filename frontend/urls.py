from django.contrib.auth import views as auth_views
from django.urls import path

from frontend import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(next_page="home", redirect_authenticated_user=True),
         name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("work/<slug:slug>/<str:task_type>/", views.workspace, name="workspace"),
    path("projects/<slug:slug>/progress/", views.project_progress, name="project-progress"),
    path("projects/<slug:slug>/auto-jobs/", views.auto_jobs, name="auto-jobs"),
    path("auto-jobs/<int:job_id>/", views.auto_job, name="auto-job"),
    path("projects/<slug:slug>/filter-runs/", views.filter_runs, name="filter-runs"),
    path("filter-runs/<int:run_id>/", views.filter_run, name="filter-run"),
    path("filter-runs/<int:run_id>/cancel/", views.filter_run_cancel, name="filter-run-cancel"),
    path("projects/<slug:slug>/exports/", views.dataset_exports, name="dataset-exports"),
    path("exports/<int:export_id>/", views.dataset_export, name="dataset-export"),
]
