from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def repair_search_index(sender, using: str = "default", **kwargs) -> None:
    from history_app.search.schema import ensure_search_index

    ensure_search_index(connections[using])


class HistoryAppConfig(AppConfig):
    name = "history_app"
    verbose_name = "History"

    def ready(self) -> None:
        post_migrate.connect(repair_search_index, sender=self, dispatch_uid="history_repair_search_index")
