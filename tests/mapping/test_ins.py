"""INS matricules are checked for shape and control key before liaison records anything on them."""

import pytest

from adapter.mapping.ins import ins_problem
from tests.support.letter_variants import ins_of


@pytest.mark.parametrize("ins", ["279035121518989", ins_of(1), ins_of(77), "185072A12345690"])
def test_well_formed_ins_pass(ins: str) -> None:
    if "2A" in ins:  # Corsica: key computed with 19 in place of 2A
        ins = ins[:13] + f"{97 - int(ins[:13].replace('2A', '19')) % 97:02d}"
    assert ins_problem(ins) is None


@pytest.mark.parametrize(("ins", "why"), [
    ("279035121518988", "control key"),
    ("123", "15 characters"),
    ("27903512151898X", "15 characters"),
    ("979035121518989", "15 characters"),
])
def test_malformed_ins_are_refused_with_the_reason(ins: str, why: str) -> None:
    problem = ins_problem(ins)
    assert problem is not None and why in problem
