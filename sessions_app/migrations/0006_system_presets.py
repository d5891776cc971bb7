"""The system presets: six tags and five session templates shown in every organization.

0003 was meant to create them and shipped empty; it is applied on existing databases, so the presets come
here. Applying is idempotent (a preset whose name already exists as a system row is left as it is), and
reversing removes only the presets this migration made that nobody has changed or used since.
"""

from django.db import migrations

SYSTEM_TAGS = [
    {"name": "important", "color": "#dc2626"},
    {"name": "follow-up", "color": "#d97706"},
    {"name": "code", "color": "#2563eb"},
    {"name": "research", "color": "#7c3aed"},
    {"name": "writing", "color": "#0d9488"},
    {"name": "support", "color": "#16a34a"},
]

SYSTEM_TEMPLATES = [
    {
        "name": "General chat",
        "description": "An open conversation with the agent's own settings.",
        "config": {},
        "tags": [],
    },
    {
        "name": "Code review",
        "description": "Review a change for bugs, risks and unclear code; precise answers.",
        "config": {
            "temperature": 0.2,
            "system_prompt": (
                "You are reviewing code. Point out bugs, risks and unclear parts, the most important "
                "first, and suggest a concrete fix for each."
            ),
        },
        "tags": ["code"],
    },
    {
        "name": "Research",
        "description": "Find and compare sources; every tool call waits for a person's approval.",
        "config": {
            "temperature": 0.3,
            "approval_mode": "manual",
            "system_prompt": (
                "You are a careful researcher. Say where each fact comes from and what is still uncertain."
            ),
        },
        "tags": ["research"],
    },
    {
        "name": "Writing",
        "description": "Draft and edit text, with more room for creativity.",
        "config": {
            "temperature": 0.9,
            "system_prompt": "You are a writing assistant. Keep the author's voice; explain larger edits.",
        },
        "tags": ["writing"],
    },
    {
        "name": "Customer support",
        "description": "Answer a customer's question; tool calls wait for approval.",
        "config": {
            "temperature": 0.3,
            "approval_mode": "manual",
            "system_prompt": (
                "You answer customers' questions politely and briefly. When you are not sure, say so and "
                "offer to hand over to a person."
            ),
        },
        "tags": ["support"],
    },
]


def create_presets(apps, schema_editor):
    Tag = apps.get_model("sessions_app", "Tag")
    SessionTemplate = apps.get_model("sessions_app", "SessionTemplate")
    for spec in SYSTEM_TAGS:
        Tag.objects.get_or_create(
            organization=None, name=spec["name"], defaults={"color": spec["color"], "is_system": True}
        )
    for spec in SYSTEM_TEMPLATES:
        # No unique constraint covers system templates (NULL organizations differ), so look before creating.
        if not SessionTemplate.objects.filter(organization=None, name=spec["name"]).exists():
            SessionTemplate.objects.create(organization=None, agent=None, is_system=True, **spec)


def delete_untouched_presets(apps, schema_editor):
    Tag = apps.get_model("sessions_app", "Tag")
    SessionTemplate = apps.get_model("sessions_app", "SessionTemplate")
    for spec in SYSTEM_TAGS:
        Tag.objects.filter(
            organization=None, is_system=True, sessions__isnull=True, copies__isnull=True, **spec
        ).delete()
    for spec in SYSTEM_TEMPLATES:
        for template in SessionTemplate.objects.filter(
            organization=None,
            is_system=True,
            agent=None,
            sessions__isnull=True,
            copies__isnull=True,
            name=spec["name"],
            description=spec["description"],
        ):
            # JSON fields are compared in Python: equality of JSON in SQL differs between databases.
            if template.config == spec["config"] and template.tags == spec["tags"]:
                template.delete()


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0005_message_streaming_index")]

    operations = [migrations.RunPython(create_presets, delete_untouched_presets)]
