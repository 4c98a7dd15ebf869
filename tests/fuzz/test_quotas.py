"""The fuzz areas together run at least the 10 000 cases issue 10 asks for (each area's
test checks that it ran its own quota)."""

from __future__ import annotations

from . import (
    test_control_api,
    test_emulator_inputs,
    test_rtp_payloads,
    test_sdp_answers,
    test_whep_headers,
)


def test_the_areas_add_up_to_ten_thousand_cases() -> None:
    over_the_wire = [
        test_sdp_answers.CONNECT_CASES,
        test_whep_headers.EXCHANGE_CASES,
        test_control_api.CALL_CASES,
        test_emulator_inputs.REQUEST_CASES,
        test_emulator_inputs.OFFER_CASES,
    ]
    in_process = [
        test_sdp_answers.PARSE_CASES,
        test_whep_headers.PARSE_CASES,
        test_emulator_inputs.PARSE_CASES,
        test_rtp_payloads.PAYLOAD_CASES,
    ]
    assert sum(over_the_wire) + sum(in_process) >= 10_000
    assert sum(over_the_wire) >= 1_000  # HTTP round trips, not only parsers in process
