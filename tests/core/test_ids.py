from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core import ids

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def reference_encode(value: uuid.UUID) -> str:
    number = value.int
    chars = []
    for _ in range(26):
        chars.append(ALPHABET[number & 31])
        number >>= 5
    return "".join(reversed(chars))


class TestEncode:
    @given(st.uuids())
    def test_matches_five_bits_at_a_time(self, value: uuid.UUID) -> None:
        assert ids.encode("lead", value) == "lead_" + reference_encode(value)

    def test_extremes(self) -> None:
        assert ids.encode("lead", uuid.UUID(int=0)) == "lead_" + "0" * 26
        assert ids.encode("lead", uuid.UUID(int=2**128 - 1)) == "lead_7" + "z" * 25


class TestDecode:
    @given(st.uuids())
    def test_round_trip(self, value: uuid.UUID) -> None:
        text = ids.encode("invoice", value)

        assert ids.decode("invoice", text) == value
        assert ids.decode("invoice", text.upper().replace("INV_", "inv_")) == value

    def test_invalid_character_named(self) -> None:
        with pytest.raises(ids.InvalidId, match="'u' is not a base32 character"):
            ids.decode("lead", "lead_" + "0" * 25 + "u")

    def test_underscore_is_not_a_digit(self) -> None:
        with pytest.raises(ids.InvalidId, match="of the form lead_"):
            ids.decode("lead", "lead_" + "0" * 12 + "_" + "0" * 13)

    def test_wrong_prefix(self) -> None:
        with pytest.raises(ids.InvalidId, match="of the form lead_"):
            ids.decode("lead", "cus_" + "0" * 26)

    def test_out_of_range(self) -> None:
        with pytest.raises(ids.InvalidId, match="out of range"):
            ids.decode("lead", "lead_8" + "0" * 25)

    def test_kelvin_sign_reads_as_k(self) -> None:
        # U+212A lower-cases to an ASCII 'k', which the per-character path accepts.
        text = "lead_" + "0" * 25 + "\u212a"

        assert ids.decode("lead", text) == ids.decode("lead", "lead_" + "0" * 25 + "k")


class TestUuidFloor:
    def test_below_every_id_made_from_then(self) -> None:
        at = datetime.now(UTC)

        floor = ids.uuid_floor(at)

        assert floor.version == 7
        assert floor <= ids.new_uuid()
        assert ids.uuid_floor(at + timedelta(milliseconds=1)) > floor

    def test_above_every_id_made_before(self) -> None:
        earlier = ids.new_uuid()

        assert ids.uuid_floor(datetime.now(UTC) + timedelta(milliseconds=2)) > earlier
