"""Encryption at rest: Fernet keys from ENCRYPTION_KEYS, rotation, and ``manage.py rotate_encryption``."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from core.crypto import DecryptionError, decrypt, encrypt, encrypted_with_current_key, rotate
from core.tenancy import tenant_context
from sessions_app.models import ProviderCredential
from sessions_app.services.catalog import provider_credential_save

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
KEY_C = Fernet.generate_key().decode()


def test_round_trip_and_a_fresh_token_each_time(settings):
    settings.ENCRYPTION_KEYS = [KEY_A]
    token = encrypt("sk-secret")
    assert token != "sk-secret" and "sk-secret" not in token
    assert decrypt(token) == "sk-secret"
    assert encrypt("sk-secret") != token
    assert encrypt("") == "" and decrypt("") == ""


def test_without_keys_one_is_derived_from_the_secret_key(settings):
    settings.ENCRYPTION_KEYS = []
    token = encrypt("sk-secret")
    assert decrypt(token) == "sk-secret"
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789-abcdefghijklmnop"
    with pytest.raises(DecryptionError):
        decrypt(token)


def test_rotation_moves_a_secret_to_the_new_key(settings):
    settings.ENCRYPTION_KEYS = [KEY_A]
    old = encrypt("sk-secret")
    settings.ENCRYPTION_KEYS = [KEY_B, KEY_A]  # new key first, old one still readable
    assert decrypt(old) == "sk-secret"
    assert not encrypted_with_current_key(old)
    new = rotate(old)
    assert encrypted_with_current_key(new)
    settings.ENCRYPTION_KEYS = [KEY_B]  # the old key is gone
    assert decrypt(new) == "sk-secret"
    with pytest.raises(DecryptionError):
        decrypt(old)
    settings.ENCRYPTION_KEYS = [KEY_A]
    with pytest.raises(DecryptionError):
        decrypt(new)


def test_rotate_refuses_a_token_no_key_reads(settings):
    settings.ENCRYPTION_KEYS = [KEY_A]
    token = encrypt("sk-secret")
    settings.ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(DecryptionError):
        rotate(token)


def make_credentials(world) -> list[ProviderCredential]:
    made = []
    for tenant, name, key in ((world.a, "one", "sk-one"), (world.a, "two", "sk-two"), (world.b, "three", "")):
        with tenant_context(tenant.org):
            made.append(
                provider_credential_save(
                    None, organization=tenant.org, name=name, kind="openai", api_key=key, is_default=False
                )
            )
    return made


def run_command() -> str:
    out = io.StringIO()
    call_command("rotate_encryption", stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_the_command_re_encrypts_every_organizations_keys_and_is_idempotent(world, settings):
    settings.ENCRYPTION_KEYS = [KEY_A]
    make_credentials(world)
    before = dict(ProviderCredential.all_tenants_unsafe.values_list("name", "api_key_encrypted"))

    settings.ENCRYPTION_KEYS = [KEY_B, KEY_A]
    assert "Re-encrypted 2 secret(s); 0 already under the current key" in run_command()
    after = dict(ProviderCredential.all_tenants_unsafe.values_list("name", "api_key_encrypted"))
    assert after["one"] != before["one"] and after["two"] != before["two"]
    assert after["three"] == ""  # no key stored: nothing to do

    assert "Re-encrypted 0 secret(s); 2 already under the current key" in run_command()
    assert dict(ProviderCredential.all_tenants_unsafe.values_list("name", "api_key_encrypted")) == after

    settings.ENCRYPTION_KEYS = [KEY_B]
    assert [decrypt(after[n]) for n in ("one", "two")] == ["sk-one", "sk-two"]


@pytest.mark.django_db
def test_the_command_reports_secrets_it_cannot_read(world, settings):
    settings.ENCRYPTION_KEYS = [KEY_A]
    make_credentials(world)
    settings.ENCRYPTION_KEYS = [KEY_C]  # key A was dropped before rotating
    with pytest.raises(CommandError, match="2 secret"):
        run_command()
    settings.ENCRYPTION_KEYS = [KEY_A]
    assert decrypt(ProviderCredential.all_tenants_unsafe.get(name="one").api_key_encrypted) == "sk-one"
