from django.urls import path, re_path

from importer import views

app_name = "importer"

urlpatterns = [
    path("webtrigger/<int:source_id>/<str:token>/", views.webtrigger, name="webtrigger"),
    # The same URL with its last slash lost (copied by hand): a redirect would drop the POST.
    path("webtrigger/<int:source_id>/<str:token>", views.webtrigger),
    re_path(r"^webtrigger(?P<rest>/.*)?$", views.webtrigger_not_found),
    path("executions/<int:pk>/progress.json", views.execution_progress, name="progress"),
    path("health/", views.health, name="health"),
    path("metrics", views.metrics, name="metrics"),
]
