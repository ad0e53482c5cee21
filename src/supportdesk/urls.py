from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from supportdesk.api.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("supportdesk.web.urls")),
]
if settings.BENCH_CEILING:  # bench/api.py's ceiling view; absent from normal installations
    urlpatterns.append(path("bench/", include("supportdesk.benchceiling.urls")))

handler400 = "supportdesk.web.views.errors.bad_request"
handler403 = "supportdesk.web.views.errors.forbidden"
handler404 = "supportdesk.web.views.errors.not_found"
handler500 = "supportdesk.web.views.errors.server_error"
