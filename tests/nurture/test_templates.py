from __future__ import annotations

from datetime import timedelta

import pytest

from app.nurture import templates
from app.nurture.runner import RETRY_MAX_SECONDS, retry_delay
from app.nurture.templates import MergeTag

VALUES: dict[str, str | None] = {
    "first_name": "Ada",
    "company": None,
    "email": "ada@example.com",
}


class TestParse:
    def test_text_and_tags(self) -> None:
        parts = templates.parse("Hi {{first_name}}, from {{ company | us }}.")

        assert parts == [
            "Hi ",
            MergeTag(name="first_name", fallback=""),
            ", from ",
            MergeTag(name="company", fallback="us"),
            ".",
        ]

    def test_single_braces_are_text(self) -> None:
        assert templates.parse("a {b} c") == ["a {b} c"]

    def test_empty_template(self) -> None:
        assert templates.parse("") == []

    @pytest.mark.parametrize(
        ("template", "fragment"),
        [
            ("Hi {{ first_name", "never closed"),
            ("Hi first_name }}", "closes no"),
            ("{{ {{ first_name }} }}", "brace"),
            ("{{ }}", "no valid name"),
            ("{{ First Name }}", "no valid name"),
            ("{{ lead.email.domain }}", "no valid name"),
            ("{{ first_name | }}", "empty fallback"),
            ("{{ first_name | " + "x" * 201 + " }}", "longer than 200"),
        ],
    )
    def test_syntax_errors(self, template: str, fragment: str) -> None:
        with pytest.raises(templates.TemplateSyntaxError) as raised:
            templates.parse(template)

        assert fragment in raised.value.message


class TestCheck:
    def test_known_fields_pass(self) -> None:
        problems = templates.check(
            "{{ first_name }} {{ unsubscribe_url }}", templates.BODY_FIELDS
        )

        assert problems == []

    def test_unknown_field_reported_once(self) -> None:
        problems = templates.check("{{ nope }} {{ nope }}", templates.LEAD_FIELDS)

        assert len(problems) == 1
        assert problems[0].code == "unknown_merge_field"
        assert "'nope'" in problems[0].message

    def test_syntax_error_reported(self) -> None:
        problems = templates.check("{{ first_name", templates.LEAD_FIELDS)

        assert [problem.code for problem in problems] == ["invalid_merge_field"]


class TestRender:
    def test_values_and_fallbacks(self) -> None:
        rendered = templates.render(
            "Hi {{ first_name }} at {{ company | your team }}", VALUES
        )

        assert rendered == "Hi Ada at your team"

    def test_missing_value_without_fallback(self) -> None:
        assert templates.render("[{{ company }}]", VALUES) == "[]"

    def test_values_inserted_unescaped(self) -> None:
        rendered = templates.render("{{ first_name }}", {"first_name": "<b>&"})

        assert rendered == "<b>&"

    def test_values_not_rendered_again(self) -> None:
        rendered = templates.render(
            "{{ first_name }}", {"first_name": "{{ email }}", "email": "x"}
        )

        assert rendered == "{{ email }}"

    def test_unknown_field_raises(self) -> None:
        with pytest.raises(KeyError):
            templates.render("{{ title }}", VALUES)


class TestRetryDelay:
    def test_first_retry_about_a_minute(self) -> None:
        delays = [retry_delay(1) for _ in range(50)]

        assert min(delays) >= timedelta(seconds=54)
        assert max(delays) <= timedelta(seconds=66)

    def test_doubles(self) -> None:
        assert retry_delay(3) >= timedelta(seconds=216)
        assert retry_delay(3) <= timedelta(seconds=264)

    def test_capped(self) -> None:
        assert retry_delay(30) <= timedelta(seconds=RETRY_MAX_SECONDS * 1.1)
