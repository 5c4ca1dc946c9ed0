from django.urls import path

from importer import views

app_name = "importer"

urlpatterns = [
    path("webtrigger/<int:source_id>/<str:token>/", views.webtrigger, name="webtrigger"),
    path("executions/<int:pk>/progress.json", views.execution_progress, name="progress"),
    path("health/", views.health, name="health"),
    path("metrics", views.metrics, name="metrics"),
]
