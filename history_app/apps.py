from django.apps import AppConfig


class HistoryAppConfig(AppConfig):
    name = "history_app"
    verbose_name = "History"
