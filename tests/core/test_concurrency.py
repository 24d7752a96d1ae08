from __future__ import annotations

import pytest

from app.core.concurrency import check_if_match
from app.core.errors import PreconditionFailed


class TestCheckIfMatch:
    def test_strong_tag_matches(self) -> None:
        check_if_match('"3"', 3)

    def test_weak_tag_never_matches(self) -> None:
        with pytest.raises(PreconditionFailed):
            check_if_match('W/"3"', 3)

    def test_any_version(self) -> None:
        check_if_match("*", 3)

    def test_one_of_several(self) -> None:
        check_if_match('"2", "3"', 3)

    @pytest.mark.parametrize("if_match", ['"03"', '"003"', 'W/"3", "03"'])
    def test_leading_zero_is_another_tag(self, if_match: str) -> None:
        with pytest.raises(PreconditionFailed):
            check_if_match(if_match, 3)
