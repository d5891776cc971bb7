"""The validated session config: model, temperature, max tokens, approval mode, on-busy policy."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.errors import ErrorCode, SwitchboardError
from sessions_app.models import ApprovalMode, OnBusy


class SessionConfigSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=100, required=False, allow_blank=False)
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=200_000, required=False)
    approval_mode = serializers.ChoiceField(choices=ApprovalMode.choices, required=False)
    on_busy = serializers.ChoiceField(choices=OnBusy.choices, required=False)
    system_prompt = serializers.CharField(max_length=20_000, required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({key: ["Unknown config key."] for key in sorted(unknown)})
        return attrs


CONFIG_DEFAULTS: dict[str, Any] = {"on_busy": OnBusy.ENQUEUE}


def validate_session_config(config: Any) -> dict[str, Any]:
    """A clean config dict, or ``VALIDATION_ERROR`` naming each bad key."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise SwitchboardError(
            ErrorCode.VALIDATION_ERROR, "config must be an object.", {"config": ["Not an object."]}
        )
    serializer = SessionConfigSerializer(data=config)
    if not serializer.is_valid():
        raise SwitchboardError(
            ErrorCode.VALIDATION_ERROR, "Invalid session config.", {"config": serializer.errors}
        )
    return dict(serializer.validated_data)
