import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0007_session_last_activity_fill")]

    operations = [
        migrations.AlterField(
            model_name="session",
            name="last_activity_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
    ]
