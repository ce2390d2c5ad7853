"""A stage started by `e2ad up` or the tests sees exactly the settings of its parent."""

from __future__ import annotations

from pathlib import Path

from e2ad.settings import load_settings
from harness.pipeline import settings_environment
from schemas.config import (
    AdSettings,
    EmailSettings,
    KafkaSettings,
    NotificationSettings,
    ProvisioningSettings,
    Settings,
    WebhookSettings,
)


def test_settings_survive_the_trip_through_the_environment(tmp_path: Path) -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1234,127.0.0.1:1235", partitions=6),
        webhook=WebhookSettings(public_url="https://e2ad.example.com", client_state="s3cret", listen_port=0),
        ad=AdSettings(url="ldap://dc1", start_tls=True, bind_dn="CN=svc", bind_password="pw", ca_file=tmp_path),
        provisioning=ProvisioningSettings(target_container="OU=Groups,DC=e2ad,DC=test"),
        mappings={"parentDistinguishedName": 'Switch([displayName], "OU=A", "B", "OU=B")'},
        tokens={"DomainFQDN": "e2ad.test"},
        state_dir=tmp_path,
    )
    assert load_settings(environ=settings_environment(settings)) == settings


def test_aliased_fields_and_lists_of_text_survive_the_trip(tmp_path: Path) -> None:
    # notifications.email.from is the field `sender` (an alias), and `to` a list of text: the
    # variables must be E2AD_NOTIFICATIONS__EMAIL__FROM and a JSON list, as an operator writes them.
    settings = Settings(
        provisioning=ProvisioningSettings(
            target_container="OU=Groups,DC=e2ad,DC=test",
            containers=["OU=Groups,DC=e2ad,DC=test", "OU=More,DC=e2ad,DC=test"],
        ),
        notifications=NotificationSettings(
            email=EmailSettings.model_validate(
                {
                    "smtp_host": "127.0.0.1",
                    "smtp_port": 2525,
                    "security": "none",
                    "from": "e2ad <e2ad@corp.example>",
                    "to": ["identity-admins@corp.example", "oncall@corp.example"],
                }
            )
        ),
        state_dir=tmp_path,
    )
    environment = settings_environment(settings)
    assert environment["E2AD_NOTIFICATIONS__EMAIL__FROM"] == "e2ad <e2ad@corp.example>"
    assert environment["E2AD_NOTIFICATIONS__EMAIL__TO"] == '["identity-admins@corp.example", "oncall@corp.example"]'
    assert load_settings(environ=environment) == settings
