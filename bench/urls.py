from django.urls import include, path

urlpatterns = [path("carrot/", include("carrot.urls"))]
