from demo import views
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("carrot/", include("carrot.urls")),
]
