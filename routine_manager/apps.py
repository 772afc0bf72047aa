from django.apps import AppConfig


class RoutineManagerConfig(AppConfig):
    name = "routine_manager"
