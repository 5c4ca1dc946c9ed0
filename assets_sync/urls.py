from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "assets-sync"
admin.site.site_title = "assets-sync"
admin.site.index_title = "Imports into Atlassian Assets"
# One dash for "nothing here" on every page (Django's default "-" beside our own labels' "—").
admin.site.empty_value_display = "—"
# The home page links to the imports dashboard.
admin.site.index_template = "admin/importer/index.html"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # Browsers ask for it on every page: "nothing", rather than a 404 in the log each time.
    path("favicon.ico", lambda request: HttpResponse(status=204)),
    path("admin/", admin.site.urls),
    path("", include("importer.urls")),
]
