"""The scheduled tasks, registered with django-q2 after every migrate (idempotent)."""

from __future__ import annotations

SCHEDULES = [
    # (task function, minutes between runs)
    ("sessions_app.tasks.runs_reap", 1),
    ("sessions_app.tasks.sessions_cleanup", 1),
    ("tools_app.tasks.tool_calls_expire", 1),
    ("tools_app.tasks.direct_tasks_reap", 1),
    ("tools_app.tasks.exec_sessions_reap", 1),
    ("core.tasks.idempotency_cleanup", 60),
    ("history_app.tasks.exports_expire", 60),
]


def schedules_ensure(**kwargs) -> None:
    from django_q.models import Schedule

    for func, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=func,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )
