from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "assets-sync"
admin.site.site_title = "assets-sync"
admin.site.index_title = "Imports into Atlassian Assets"
# One dash for "nothing here" on every page (Django's default "-" beside our own labels' "—").
admin.site.empty_value_display = "—"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("importer.urls")),
]
