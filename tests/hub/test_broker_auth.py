"""Mosquitto's password file and ACL as CareHub renders them: format, rules, atomic writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hub.broker_auth import (
    BrokerAuthError,
    DeviceGrant,
    Login,
    Prefixes,
    mosquitto_hash,
    render_acl,
    render_password_file,
    verify_mosquitto_hash,
    write_atomically,
)

HASH = mosquitto_hash("pw")


def test_hashes_have_mosquittos_7_format_and_verify() -> None:
    hashed = mosquitto_hash("s3cret", salt=b"\x00" * 12)
    assert hashed.startswith("$7$101$AAAAAAAAAAAAAAAA$")
    assert verify_mosquitto_hash("s3cret", hashed)
    assert not verify_mosquitto_hash("s3cre", hashed)
    assert mosquitto_hash("s3cret") != mosquitto_hash("s3cret")  # a fresh salt each time


def test_a_hash_written_by_mosquitto_passwd_verifies_here(tmp_path: Path) -> None:
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        pytest.fail(
            "mosquitto_passwd is missing (Debian package mosquitto; `make services` installs it)",
            pytrace=False,
        )
    path = tmp_path / "pw"
    subprocess.run([binary, "-c", "-b", str(path), "alice", "wonder land"], check=True)
    username, hashed = path.read_text().strip().split(":", 1)
    assert username == "alice" and verify_mosquitto_hash("wonder land", hashed)


def test_the_password_file_is_sorted_and_refuses_duplicates_and_bad_names() -> None:
    text = render_password_file([Login("hub", HASH), DeviceGrant("d1", HASH, "h1", "d1")])
    assert text == f"d1:{HASH}\nhub:{HASH}\n"
    with pytest.raises(BrokerAuthError, match="used twice"):
        render_password_file([Login("d1", HASH), DeviceGrant("d1", HASH, "h1", "d1")])
    with pytest.raises(BrokerAuthError, match="':'"):
        render_password_file([Login("a:b", HASH)])
    with pytest.raises(BrokerAuthError, match="spaces"):
        render_password_file([Login("a b", HASH)])
    with pytest.raises(BrokerAuthError, match=r"\$7\$"):
        render_password_file([Login("a", "plain")])


def _rules(acl: str) -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    user = ""
    for line in acl.splitlines():
        if line.startswith("user "):
            user = line[5:]
            rules[user] = []
        elif line.startswith("topic "):
            assert user, "no rule may apply to anonymous clients"
            rules[user].append(line[6:])
    return rules


def test_a_device_may_write_only_its_own_topics_and_read_only_its_homes_feedback() -> None:
    acl = render_acl(
        [DeviceGrant("d2", HASH, "h2", "d2"), DeviceGrant("d1", HASH, "h1", "d1")],
        "carehub-hub",
        bridges=["z2m-bridge"],
    )
    assert _rules(acl) == {
        "carehub-hub": [
            "read carehub/v1/#",
            "read zigbee2mqtt/#",
            "write carehub/v1/+/feedback",
        ],
        "z2m-bridge": ["readwrite zigbee2mqtt/#"],
        "d1": [
            "write carehub/v1/h1/d1/event",
            "write carehub/v1/h1/d1/status",
            "read carehub/v1/h1/feedback",
        ],
        "d2": [
            "write carehub/v1/h2/d2/event",
            "write carehub/v1/h2/d2/status",
            "read carehub/v1/h2/feedback",
        ],
    }


def test_the_acl_follows_configured_prefixes_and_refuses_unwritable_topics() -> None:
    acl = render_acl([DeviceGrant("d1", HASH, "h1", "d1")], "hub", Prefixes("kommune/v1/", "zb"))
    assert "topic write kommune/v1/h1/d1/event" in acl and "topic read zb/#" in acl
    with pytest.raises(BrokerAuthError, match="spaces"):
        render_acl([DeviceGrant("d1", HASH, "home 1", "d1")], "hub")


def test_files_are_replaced_atomically_and_keep_their_mode(tmp_path: Path) -> None:
    path = tmp_path / "carehub.passwd"
    write_atomically(path, "a\n")
    assert path.read_text() == "a\n" and path.stat().st_mode & 0o777 == 0o640
    path.chmod(0o600)
    write_atomically(path, "b\n")
    assert path.read_text() == "b\n" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["carehub.passwd"]  # no temp file left
