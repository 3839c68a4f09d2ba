from django.contrib.auth import views as auth_views
from django.urls import path

from frontend import views, views_people, views_projects

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
    path("projects/<slug:slug>/members/", views_people.members, name="members"),
    path("projects/<slug:slug>/members/<str:username>/<str:action>/", views_people.member_action, name="member-action"),
    path("projects/<slug:slug>/invitations/", views_people.invitation_create, name="invitation-create"),
    path("projects/<slug:slug>/invitations/<int:invitation_id>/revoke/", views_people.invitation_revoke,
         name="invitation-revoke-page"),
    path("invite/<str:token>/", views_people.invitation, name="invitation"),
    path("join-project/", views_people.join_project, name="join-project"),
    path("projects/new/", views_projects.project_new, name="project-new"),
    path("projects/<slug:slug>/settings/", views_projects.project_settings, name="project-settings"),
    path("projects/<slug:slug>/archive/", views_projects.project_archive, name="project-archive"),
    path("projects/<slug:slug>/imports/", views_projects.project_imports, name="project-imports"),
    path("projects/<slug:slug>/work-units/open/", views_projects.project_work_units_open,
         name="project-work-units-open"),
    path("imports/<int:job_id>/", views_projects.import_job, name="import-job"),
    path("imports/<int:job_id>/rejected.csv", views_projects.import_job_rejected_csv, name="import-job-rejected-csv"),
]
