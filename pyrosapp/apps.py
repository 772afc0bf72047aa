from django.apps import AppConfig


class PyrosAppConfig(AppConfig):
    name = "pyrosapp"
    verbose_name = "PyROS data"
