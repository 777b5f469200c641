"""The CLI's shared helpers: the default month and the checks of listed values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from usagewatch.cli.output import CliError, default_period, listed, one_of
from usagewatch.model import Period

NOW = datetime(2026, 12, 7, 16, tzinfo=UTC)


def test_the_default_month_is_the_last_that_ended_unless_only_this_one_was_collected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert default_period("2026-10", lambda p: False, now=NOW) == Period(2026, 10)
    assert capsys.readouterr().err == ""  # a month given is not remarked on
    assert default_period(None, now=NOW) == Period(2026, 11)
    assert "using 2026-11 (the last month that ended)" in capsys.readouterr().err
    assert default_period(None, lambda p: p == Period(2026, 12), now=NOW) == Period(2026, 12)
    assert "using 2026-12 (the latest month collected" in capsys.readouterr().err
    assert default_period(None, lambda p: False, now=NOW) == Period(2026, 11)  # nothing anywhere: still last month
    assert default_period(None, lambda p: True, now=NOW) == Period(2026, 11)


def test_listed_values_are_checked_and_the_valid_ones_named() -> None:
    assert listed("--status", " ok,under_billed ", ("under_billed", "ok")) == ["ok", "under_billed"]
    with pytest.raises(CliError, match=r"--status: unknown value 'under-billed' \(one of under_billed, ok\)"):
        listed("--status", "ok,under-billed", ("under_billed", "ok"))
    with pytest.raises(CliError, match="one or more of"):
        listed("--status", ",", ("ok",))
    one_of("--rule", None, ("over_quota",))
    with pytest.raises(CliError) as raised:
        one_of("--rule", "nonsense", ("over_quota",))
    assert raised.value.code == 1
