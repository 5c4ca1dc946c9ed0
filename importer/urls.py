from django.urls import path

from importer import views

app_name = "importer"

urlpatterns = [
    path("executions/<int:pk>/progress.json", views.execution_progress, name="progress"),
]
