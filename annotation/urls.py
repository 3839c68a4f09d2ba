from django.urls import path

from annotation import api, api_work

urlpatterns = [
    path("auth/token/", api.TokenObtainApi.as_view(), name="auth-token"),
    path("projects/", api.ProjectListCreateApi.as_view(), name="project-list"),
    path("projects/<slug:slug>/", api.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<slug:slug>/members/", api.MemberListCreateApi.as_view(), name="member-list"),
    path("projects/<slug:slug>/members/<str:username>/", api.MemberDetailApi.as_view(), name="member-detail"),
    path("projects/<slug:slug>/members/<str:username>/suspend/", api.MemberSuspendApi.as_view(), name="member-suspend"),
    path("projects/<slug:slug>/members/<str:username>/reinstate/", api.MemberReinstateApi.as_view(),
         name="member-reinstate"),
    path("projects/<slug:slug>/prompts/", api.PromptListApi.as_view(), name="prompt-list"),
    path("projects/<slug:slug>/images/", api.ImageListApi.as_view(), name="image-list"),
    path("projects/<slug:slug>/comparisons/", api.ComparisonListApi.as_view(), name="comparison-list"),
    path("projects/<slug:slug>/imports/", api.ImportJobListCreateApi.as_view(), name="import-list"),
    path("projects/<slug:slug>/judgments/preferences/", api.PreferenceListApi.as_view(), name="preference-list"),
    path("projects/<slug:slug>/judgments/aspect-scores/", api.AspectScoreListApi.as_view(), name="aspect-score-list"),
    path("projects/<slug:slug>/judgments/personal-ratings/", api.PersonalRatingListApi.as_view(),
         name="personal-rating-list"),
    path("projects/<slug:slug>/judgments/artifact-flags/", api.ArtifactFlagListApi.as_view(),
         name="artifact-flag-list"),
    path("projects/<slug:slug>/work/next/", api_work.WorkNextApi.as_view(), name="work-next"),
    path("projects/<slug:slug>/work/submit/", api_work.WorkSubmitApi.as_view(), name="work-submit"),
    path("projects/<slug:slug>/work/undo/", api_work.WorkUndoApi.as_view(), name="work-undo"),
    path("projects/<slug:slug>/work/progress/", api_work.WorkProgressApi.as_view(), name="work-progress"),
    path("projects/<slug:slug>/gold-units/", api_work.GoldUnitsApi.as_view(), name="gold-units"),
    path("me/profile/", api_work.MyProfileApi.as_view(), name="me-profile"),
    path("imports/<int:job_id>/", api.ImportJobDetailApi.as_view(), name="import-detail"),
    path("imports/<int:job_id>/cancel/", api.ImportJobCancelApi.as_view(), name="import-cancel"),
    path("imports/<int:job_id>/errors/", api.ImportJobErrorListApi.as_view(), name="import-error-list"),
]
