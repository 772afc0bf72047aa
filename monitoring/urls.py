from django.urls import path

from monitoring import views

app_name = "monitoring"

urlpatterns = [
    path("weather/", views.weather, name="weather"),
    path("weather/data/", views.weather_data, name="weather_data"),
    path("devices/", views.device_list, name="device_list"),
    path("devices/<slug:device>/", views.device_detail, name="device_detail"),
]
