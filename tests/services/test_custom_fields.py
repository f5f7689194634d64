"""Typed custom fields: definitions, coercion of every type, and the API's errors."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import Org
from textdesk.services import custom_fields
from textdesk.services.custom_fields import coerce_fields, coerce_value
from textdesk.services.errors import Conflict, Forbidden, Invalid, NotFound
from textdesk.store.db import Database


@pytest.mark.parametrize(
    ("type_", "raw", "stored"),
    [
        ("text", "  Gold  ", "Gold"),
        ("text", 42, "42"),
        ("number", "1,234", 1234),
        ("number", "3.5", 3.5),
        ("number", 7, 7),
        ("number", "-2", -2),
        ("date", "2026-01-31", "2026-01-31"),
        ("date", "01/31/2026", "2026-01-31"),
        ("date", "1/5/26", "2026-01-05"),
        ("date", "2026-01-31T10:00:00+02:00", "2026-01-31"),
        ("boolean", "Yes", True),
        ("boolean", "n", False),
        ("boolean", 1, True),
        ("boolean", False, False),
        ("text", "", None),
        ("number", "  ", None),
        ("date", None, None),
    ],
)
def test_coerce_value(type_: str, raw: object, stored: object) -> None:
    assert coerce_value(type_, raw, key="k") == stored


@pytest.mark.parametrize(
    ("type_", "raw", "message"),
    [
        ("number", "abc", "fields.k must be a number, got 'abc'"),
        ("number", True, "got a boolean"),
        ("number", "nan", "finite"),
        ("date", "31/31/2026", "must be a date like 2026-01-31"),
        ("date", 5, "must be a date"),
        ("boolean", "maybe", "yes/no"),
        ("text", ["a"], "text field"),
    ],
)
def test_coerce_value_errors_name_the_field(type_: str, raw: object, message: str) -> None:
    with pytest.raises(Invalid, match=message) as info:
        coerce_value(type_, raw, key="k")
    assert info.value.field == "fields.k"


@given(st.text(max_size=50))
def test_number_coercion_never_raises_anything_but_invalid(raw: str) -> None:
    try:
        value = coerce_value("number", raw, key="n")
    except Invalid:
        return
    assert value is None or isinstance(value, int | float)


def test_unknown_key_is_refused() -> None:
    with pytest.raises(Invalid, match="unknown custom field 'colour'") as info:
        coerce_fields({"size": "number"}, {"colour": "red"})
    assert info.value.field == "fields.colour"
    assert coerce_fields(
        {"size": "number"},
        {
            "size": "3",
        },
    ) == {"size": 3}
    assert coerce_fields({"size": "number"}, {"size": ""}) == {}


def test_define_list_delete(db: Database, acme: Org, globex: Org) -> None:
    admin = acme.admin.principal
    field = custom_fields.create_field(db, admin, key="last_order", label="", type_="date")
    assert field.label == "Last order"
    custom_fields.create_field(db, admin, key="vip_level", label="VIP level", type_="number")
    with db.read() as conn:
        assert custom_fields.field_types(conn, acme.org.id) == {
            "last_order": "date",
            "vip_level": "number",
        }
        assert [f.key for f in custom_fields.list_fields(conn, acme.org.id)] == [
            "last_order",
            "vip_level",
        ]
        assert custom_fields.field_types(conn, globex.org.id) == {}
    with pytest.raises(Conflict):
        custom_fields.create_field(db, admin, key="last_order", label="", type_="text")
    # Another organization may use the same key.
    custom_fields.create_field(db, globex.admin.principal, key="last_order", label="", type_="text")
    with pytest.raises(NotFound):
        custom_fields.delete_field(db, globex.admin.principal, "vip_level")
    custom_fields.delete_field(db, admin, "vip_level")
    with db.read() as conn:
        assert custom_fields.field_types(conn, acme.org.id) == {"last_order": "date"}


@pytest.mark.parametrize(
    ("key", "type_", "field", "message"),
    [
        ("Last Order", "date", "key", "lowercase letter"),
        ("1st", "text", "key", "lowercase letter"),
        ("email", "text", "key", "built-in"),
        ("score", "float", "type", "one of text, number, date, boolean"),
    ],
)
def test_definition_errors(
    db: Database, acme: Org, key: str, type_: str, field: str, message: str
) -> None:
    with pytest.raises(Invalid, match=message) as info:
        custom_fields.create_field(db, acme.admin.principal, key=key, label="", type_=type_)
    assert info.value.field == field


def test_agents_cannot_define_fields(db: Database, acme: Org) -> None:
    with pytest.raises(Forbidden):
        custom_fields.create_field(db, acme.agent.principal, key="x", label="", type_="text")


def test_api(client: TestClient, acme: Org) -> None:
    created = client.post(
        "/api/v1/custom-fields",
        json={"key": "birthday", "type": "date"},
        headers=acme.admin.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["label"] == "Birthday"
    listed = client.get("/api/v1/custom-fields", headers=acme.agent.headers).json()
    assert [f["key"] for f in listed] == ["birthday"]
    bad = client.post(
        "/api/v1/custom-fields", json={"key": "x", "type": "colour"}, headers=acme.admin.headers
    )
    assert bad.status_code == 422
    assert "type" in bad.text
    assert (
        client.delete("/api/v1/custom-fields/birthday", headers=acme.admin.headers).status_code
        == 204
    )
    assert (
        client.delete("/api/v1/custom-fields/birthday", headers=acme.admin.headers).status_code
        == 404
    )
