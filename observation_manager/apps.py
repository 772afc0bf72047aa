from django.apps import AppConfig


class ObservationManagerConfig(AppConfig):
    name = "observation_manager"
