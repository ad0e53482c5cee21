from django.urls import path

from supportdesk.benchceiling import views

urlpatterns = [
    path("ceiling", views.ceiling, name="bench_ceiling"),
]
