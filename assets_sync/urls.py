from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "assets-sync"
admin.site.site_title = "assets-sync"
admin.site.index_title = "Imports into Atlassian Assets"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("importer.urls")),
]
