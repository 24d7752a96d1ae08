from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import decode
from app.core.pagination import encode_sort_cursor
from app.models import Lead
from tests.leads.helpers import create_lead, define_field
from tests.users.factories import create_user


async def listed(
    client: httpx.AsyncClient, auth: dict[str, str], params: Any
) -> list[str]:
    response = await client.get("/v1/leads", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def walk(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, str]
) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page_params = {**params, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/leads", params=page_params, headers=auth)).json()
        seen.extend(item["id"] for item in page["data"])
        if not page["has_more"]:
            return seen
        cursor = page["next_cursor"]


async def set_columns(session: AsyncSession, lead_id: str, **values: Any) -> None:
    await session.execute(
        update(Lead).where(Lead.id == decode("lead", lead_id)).values(**values)
    )
    await session.commit()


class TestSearchQuery:
    async def test_matches_name_email_company(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        by_first = await create_lead(
            client, auth, email="a@x.example", first_name="Zelda"
        )
        by_last = await create_lead(
            client, auth, email="b@x.example", last_name="MacZel"
        )
        by_email = await create_lead(client, auth, email="zel@x.example")
        by_company = await create_lead(
            client, auth, email="c@x.example", company="ZELtek"
        )
        await create_lead(client, auth, email="d@x.example", first_name="Ada")

        found = await listed(client, auth, {"q": "zEl"})

        expected = [by_company, by_email, by_last, by_first]
        assert found == [lead["id"] for lead in expected]

    async def test_wildcards_are_literal(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        literal = await create_lead(
            client, auth, email="a@x.example", company="100%_Co"
        )
        await create_lead(client, auth, email="b@x.example", company="1000 Co")

        assert await listed(client, auth, {"q": "100%_"}) == [literal["id"]]
        assert await listed(client, auth, {"q": "0_c"}) == []


class TestFilters:
    async def test_status_several(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        new = await create_lead(client, auth, email="a@x.example")
        working = await create_lead(client, auth, email="b@x.example")
        junk = await create_lead(client, auth, email="c@x.example")
        await client.patch(
            f"/v1/leads/{working['id']}", json={"status": "working"}, headers=auth
        )
        await client.patch(
            f"/v1/leads/{junk['id']}", json={"status": "junk"}, headers=auth
        )

        found = await listed(client, auth, [("status", "new"), ("status", "working")])

        assert found == [working["id"], new["id"]]

    async def test_source_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        owner = (await create_user(client, auth))["id"]
        partner = await create_lead(
            client, auth, email="a@x.example", source="partner", owner_id=owner
        )
        await create_lead(client, auth, email="b@x.example", source="partner")
        await create_lead(
            client, auth, email="c@x.example", source="api", owner_id=owner
        )

        found = await listed(
            client,
            auth,
            [("source", "partner"), ("source", "import"), ("owner_id", owner)],
        )

        assert found == [partner["id"]]

    async def test_score_range(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        leads = [
            await create_lead(client, auth, email=f"s{i}@x.example") for i in range(4)
        ]
        for points, lead in zip((-5, 10, 20, 30), leads, strict=True):
            await set_columns(session, lead["id"], score=points)

        found = await listed(client, auth, {"score_min": "10", "score_max": "20"})

        assert found == [leads[2]["id"], leads[1]["id"]]

    async def test_tags_all_of(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        both = await create_lead(
            client, auth, email="a@x.example", tags=["VIP", "emea", "vip"]
        )
        await create_lead(client, auth, email="b@x.example", tags=["vip"])

        found = await listed(client, auth, [("tag", "vip"), ("tag", "EMEA")])

        assert found == [both["id"]]
        assert both["tags"] == ["vip", "emea"]

    async def test_tags_replaced_and_cleared(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth, tags=["a"])

        replaced = await client.patch(
            f"/v1/leads/{lead['id']}", json={"tags": ["b", "c"]}, headers=auth
        )
        cleared = await client.patch(
            f"/v1/leads/{lead['id']}", json={"tags": None}, headers=auth
        )

        assert replaced.json()["tags"] == ["b", "c"]
        assert cleared.json()["tags"] == []

    async def test_created_and_updated_ranges(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        old = await create_lead(client, auth, email="a@x.example")
        recent = await create_lead(client, auth, email="b@x.example")
        now = datetime.now(UTC)
        await set_columns(
            session,
            old["id"],
            created_at=now - timedelta(days=10),
            updated_at=now - timedelta(days=5),
        )
        middle = (now - timedelta(days=7)).isoformat()
        touched = (now - timedelta(days=2)).isoformat()

        assert await listed(client, auth, {"created_before": middle}) == [old["id"]]
        assert await listed(client, auth, {"created_after": middle}) == [recent["id"]]
        assert await listed(client, auth, {"updated_before": touched}) == [old["id"]]
        assert await listed(client, auth, {"updated_after": touched}) == [recent["id"]]


class TestAttributeFilters:
    @pytest.fixture
    async def leads(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> list[dict[str, Any]]:
        await define_field(client, auth, key="budget", label="B", type="number")
        await define_field(client, auth, key="renewal", label="R", type="date")
        await define_field(client, auth, key="vip", label="V", type="boolean")
        await define_field(client, auth, key="note", label="N", type="text")
        await define_field(
            client, auth, key="tier", label="T", type="choice", choices=["gold", "tin"]
        )
        rows = [
            {
                "budget": 500,
                "renewal": "2027-01-15",
                "vip": True,
                "note": "Big deal",
                "tier": "gold",
            },
            {
                "budget": 99.5,
                "renewal": "2026-06-01",
                "vip": False,
                "note": "small",
                "tier": "tin",
            },
            {},
        ]
        return [
            await create_lead(client, auth, email=f"f{i}@x.example", attributes=row)
            for i, row in enumerate(rows)
        ]

    @pytest.mark.parametrize(
        ("condition", "expected"),
        [
            ("budget:eq:500", [0]),
            ("budget:eq:500.0", [0]),
            ("budget:ne:500", [2, 1]),
            ("budget:gt:99.5", [0]),
            ("budget:gte:99.5", [1, 0]),
            ("budget:lt:100", [1]),
            ("budget:lte:-1", []),
            ("renewal:gt:2026-12-31", [0]),
            ("renewal:lte:2026-06-01", [1]),
            ("renewal:eq:2026-06-01", [1]),
            ("vip:eq:true", [0]),
            ("vip:eq:false", [1]),
            ("note:contains:DEAL", [0]),
            ("note:eq:small", [1]),
            ("tier:eq:tin", [1]),
            ("tier:exists:true", [1, 0]),
            ("tier:exists:false", [2]),
        ],
    )
    async def test_condition(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        leads: list[dict[str, Any]],
        condition: str,
        expected: list[int],
    ) -> None:
        found = await listed(client, auth, {"attribute": condition})

        assert found == [leads[index]["id"] for index in sorted(expected, reverse=True)]

    async def test_several_all_hold(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        leads: list[dict[str, Any]],
    ) -> None:
        found = await listed(
            client,
            auth,
            [("attribute", "budget:gt:10"), ("attribute", "vip:eq:false")],
        )

        assert found == [leads[1]["id"]]

    async def test_untyped_old_value_ignored_by_range(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_lead(client, auth, email="o@x.example", attributes={"size": "big"})
        await define_field(client, auth, key="size", label="S", type="number")

        assert await listed(client, auth, {"attribute": "size:gt:1"}) == []

    @pytest.mark.parametrize(
        ("condition", "message"),
        [
            ("budget", "expected <key>:<operator>:<value>"),
            ("Budget:eq:1", "expected <key>:<operator>:<value>"),
            ("unknown:eq:1", "no lead custom field 'unknown'"),
            ("budget:eq:ten", "budget is a number"),
            ("budget:eq:NaN", "budget is a number"),
            ("budget:contains:1", "number fields take the operators"),
            ("renewal:gt:2026-02-30", "renewal is a date YYYY-MM-DD"),
            ("vip:eq:yes", "vip is true or false"),
            ("tier:eq:silver", "tier is one of: gold, tin"),
            ("tier:gt:gold", "choice fields take the operators"),
            ("note:exists:maybe", "exists takes true or false"),
            ("note:eq:", "the value is empty"),
        ],
    )
    async def test_bad_condition_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        leads: list[dict[str, Any]],
        condition: str,
        message: str,
    ) -> None:
        response = await client.get(
            "/v1/leads", params={"attribute": condition}, headers=auth
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "query.attribute"
        assert message in error["message"]

    async def test_too_many_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        params = {"attribute": [f"k{i}:eq:1" for i in range(11)]}

        response = await client.get("/v1/leads", params=params, headers=auth)

        assert response.status_code == 422


class TestSorts:
    @pytest.fixture
    async def leads(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> list[dict[str, Any]]:
        names = ["Young", None, "adams", "Baker", "Young"]
        leads = [
            await create_lead(client, auth, email=f"o{i}@x.example", last_name=name)
            for i, name in enumerate(names)
        ]
        now = datetime.now(UTC)
        for index, lead in enumerate(leads):
            await set_columns(
                session,
                lead["id"],
                score=[5, 5, 1, 9, -3][index],
                created_at=now - timedelta(hours=index),
                updated_at=now - timedelta(hours=10 - index),
            )
        return leads

    @pytest.mark.parametrize(
        ("sort", "order"),
        [
            ("created_at", [4, 3, 2, 1, 0]),
            ("-created_at", [0, 1, 2, 3, 4]),
            ("updated_at", [0, 1, 2, 3, 4]),
            ("-updated_at", [4, 3, 2, 1, 0]),
            ("score", [4, 2, 0, 1, 3]),
            ("-score", [3, 1, 0, 2, 4]),
        ],
    )
    async def test_order_across_pages(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        leads: list[dict[str, Any]],
        sort: str,
        order: list[int],
    ) -> None:
        seen = await walk(client, auth, {"sort": sort})

        assert seen == [leads[index]["id"] for index in order]

    async def test_last_name_puts_missing_first(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        leads: list[dict[str, Any]],
    ) -> None:
        ascending = await walk(client, auth, {"sort": "last_name"})
        descending = await walk(client, auth, {"sort": "-last_name"})

        assert ascending[0] == leads[1]["id"]
        assert descending == list(reversed(ascending))
        assert len(set(ascending)) == 5

    async def test_rows_added_while_paging(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        first = [
            await create_lead(client, auth, email=f"m{i}@x.example", last_name=name)
            for i, name in enumerate(["b", "d", "f", "h"])
        ]
        page = (
            await client.get(
                "/v1/leads", params={"sort": "last_name", "limit": "2"}, headers=auth
            )
        ).json()
        before = await create_lead(client, auth, email="n1@x.example", last_name="a")
        after = await create_lead(client, auth, email="n2@x.example", last_name="e")

        rest = await walk_from(client, auth, page["next_cursor"])

        seen = [item["id"] for item in page["data"]] + rest
        assert seen == [
            first[0]["id"],
            first[1]["id"],
            after["id"],
            first[2]["id"],
            first[3]["id"],
        ]
        assert before["id"] not in seen

    async def test_cursor_key_out_of_range_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        row_id = uuid.uuid4()
        cursors = {
            "score": encode_sort_cursor("score", 2**31, row_id),
            "-score": encode_sort_cursor("-score", -(2**63), row_id),
            "created_at": encode_sort_cursor(
                "created_at", "9999-12-31T23:59:59-14:00", row_id
            ),
            "-updated_at": encode_sort_cursor(
                "-updated_at", "0001-01-01T00:00:00+14:00", row_id
            ),
            "last_name": encode_sort_cursor("last_name", "Lovelace\x00", row_id),
        }

        responses = {
            sort: await client.get(
                "/v1/leads", params={"sort": sort, "cursor": cursor}, headers=auth
            )
            for sort, cursor in cursors.items()
        }

        for sort, response in responses.items():
            assert response.status_code == 422, sort
            assert response.json()["errors"][0]["code"] == "invalid_cursor", sort

    async def test_cursor_of_other_sort_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        leads: list[dict[str, Any]],
    ) -> None:
        page = (
            await client.get(
                "/v1/leads", params={"sort": "score", "limit": "2"}, headers=auth
            )
        ).json()

        response = await client.get(
            "/v1/leads",
            params={"sort": "-score", "cursor": page["next_cursor"]},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.cursor"
        assert "sort=score" in response.json()["detail"]

    @pytest.mark.parametrize(
        "cursor",
        [
            "bm90LWpzb24",
            "WyJzY29yZSIsIngiLCIwMCJd",
            "WyJzY29yZSIsMSw1XQ",
            "eyJhIjoxfQ",
            "WyJzY29yZSIsdHJ1ZSwiMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAiXQ",
            "A" * 600,
        ],
    )
    async def test_forged_cursor_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str], cursor: str
    ) -> None:
        response = await client.get(
            "/v1/leads", params={"sort": "score", "cursor": cursor}, headers=auth
        )

        assert response.status_code == 422


async def walk_from(
    client: httpx.AsyncClient, auth: dict[str, str], cursor: str
) -> list[str]:
    seen: list[str] = []
    while True:
        params = {"sort": "last_name", "limit": "2", "cursor": cursor}
        page = (await client.get("/v1/leads", params=params, headers=auth)).json()
        seen.extend(item["id"] for item in page["data"])
        if not page["has_more"]:
            return seen
        cursor = page["next_cursor"]


class TestBadListParameters:
    @pytest.mark.parametrize(
        "params",
        [
            {"status": "new,working"},
            {"status": "open"},
            {"source": "fax"},
            {"score_min": "1.5"},
            {"score_min": "5", "score_max": "1"},
            {"score_max": "10000000"},
            {"tag": "a,b"},
            {"tag": "x" * 65},
            {"sort": "email"},
            {"sort": "--score"},
            {"created_after": "2026-01-01"},
            {"updated_before": "yesterday"},
            {"colour": "red"},
            [("owner_id", "a"), ("owner_id", "b")],
            [("sort", "score"), ("sort", "-score")],
        ],
    )
    async def test_rejected_with_422(
        self, client: httpx.AsyncClient, auth: dict[str, str], params: Any
    ) -> None:
        response = await client.get("/v1/leads", params=params, headers=auth)

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"].startswith("query.")

    @pytest.mark.parametrize(
        "tags", [["a,b"], ["two words"], ["x" * 65], [f"t{i}" for i in range(51)], [""]]
    )
    async def test_bad_tags_on_create(
        self, client: httpx.AsyncClient, auth: dict[str, str], tags: list[str]
    ) -> None:
        response = await client.post(
            "/v1/leads", json={"email": "ada@example.com", "tags": tags}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"].startswith("tags")
