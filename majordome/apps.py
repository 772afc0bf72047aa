from django.apps import AppConfig


class MajordomeConfig(AppConfig):
    name = "majordome"
