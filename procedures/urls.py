from django.urls import path

from procedures import views

app_name = "procedures"

urlpatterns = [
    path("", views.queue_page, name="queue"),
    path("items/<uuid:uid>/", views.item_page, name="item"),
]
