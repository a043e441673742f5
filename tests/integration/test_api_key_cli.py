"""`backorder api-key create | list | revoke`: an operator manages keys from a shell, with no
key in hand (the master key may be unset)."""

from __future__ import annotations

import asyncio
import re

import pytest
from httpx import AsyncClient

from backorder.cli import main
from tests.support.api import OPS, bearer


@pytest.fixture
def cli(database_url: str, clean_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)


def create(
    capsys: pytest.CaptureFixture[str], name: str, role: str = "storefront"
) -> dict[str, str]:
    assert main(["api-key", "create", "--name", name, "--role", role]) == 0
    out = capsys.readouterr().out
    return dict(re.findall(r"^(\w+):\s+(\S+)$", out, re.MULTILINE))


def test_list_shows_every_active_key_without_its_secret(
    cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    web = create(capsys, "web-shop")
    desk = create(capsys, "ops-desk", "ops")
    assert main(["api-key", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ROLE", "PREFIX", "CREATED", "LAST", "USED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows.keys() == {web["id"], desk["id"]}
    assert rows[web["id"]][1:3] == ["web-shop", "storefront"]
    assert rows[desk["id"]][1:3] == ["ops-desk", "ops"]
    assert rows[web["id"]][-1] == "never"
    assert web["key"] not in "\n".join(lines)


def test_revoke_removes_the_key_from_the_list(
    cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    web = create(capsys, "web-shop")
    assert main(["api-key", "revoke", web["id"]]) == 0
    assert web["id"] in capsys.readouterr().out
    assert main(["api-key", "list"]) == 0
    assert web["id"] not in capsys.readouterr().out


def test_revoking_an_unknown_or_revoked_key_fails_with_a_message(
    cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    web = create(capsys, "web-shop")
    assert main(["api-key", "revoke", web["id"]]) == 0
    capsys.readouterr()
    assert main(["api-key", "revoke", web["id"]]) == 1
    assert f"no active API key {web['id']}" in capsys.readouterr().err


def test_revoke_refuses_an_id_that_is_not_one(
    cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["api-key", "revoke", "not-an-id"])
    assert exit_.value.code == 2
    assert "invalid UUID value" in capsys.readouterr().err


def test_create_refuses_a_blank_name(cli: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["api-key", "create", "--name", "   ", "--role", "ops"])
    assert exit_.value.code == 2
    assert "must not be blank" in capsys.readouterr().err


async def test_a_key_revoked_from_the_shell_answers_401_at_once(
    cli: None, client: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    web = await asyncio.to_thread(create, capsys, "web-shop")  # the CLI runs its own loop
    assert (await client.get("/v1/products", headers=bearer(web["key"]))).status_code == 200
    assert await asyncio.to_thread(main, ["api-key", "revoke", web["id"]]) == 0
    assert (await client.get("/v1/products", headers=bearer(web["key"]))).status_code == 401
    assert (await client.get("/v1/products", headers=OPS)).status_code == 200
