from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CoreConfig(AppConfig):
    default = True
    name = "core"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        import core.db  # noqa: F401  (fork safety of connection pools)
        from core.schedules import schedules_ensure

        post_migrate.connect(schedules_ensure, sender=self, dispatch_uid="switchboard-schedules")


class SwitchboardAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "core.admin_base.SwitchboardAdminSite"
