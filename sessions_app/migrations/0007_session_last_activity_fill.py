"""Sessions without ``last_activity_at`` (imported, or added in admin) take their creation time, before
0008 makes the column NOT NULL. A separate migration: on PostgreSQL, updating rows and altering their
table in one transaction can fail with pending trigger events."""

from django.db import migrations
from django.db.models import F


def fill_last_activity(apps, schema_editor):
    Session = apps.get_model("sessions_app", "Session")
    Session.objects.filter(last_activity_at__isnull=True).update(last_activity_at=F("created_at"))


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0006_system_presets")]

    operations = [migrations.RunPython(fill_last_activity, migrations.RunPython.noop)]
