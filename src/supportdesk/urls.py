from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("supportdesk.web.urls")),
]

handler400 = "supportdesk.web.views.errors.bad_request"
handler403 = "supportdesk.web.views.errors.forbidden"
handler404 = "supportdesk.web.views.errors.not_found"
handler500 = "supportdesk.web.views.errors.server_error"
