"""cli/timeparse.py: the one parser of times and durations every CLI option uses."""

import click
import pytest
from click.testing import CliRunner

from cli.timeparse import (TIME, DurationType, TimeParseError, format_duration, format_time, parse_duration_ms,
                           parse_time_ms)

NOW = 1_796_119_200_000  # 2026-12-01T10:00:00Z


@pytest.mark.parametrize("text, ms", [
    ("500ms", 500), ("30s", 30_000), ("90m", 5_400_000), ("2h", 7_200_000), ("3d", 259_200_000),
    ("1w", 604_800_000), ("1d12h", 129_600_000), ("1.5h", 5_400_000), ("PT2H", 7_200_000), ("P3D", 259_200_000),
    ("P1DT1H30M", 91_800_000), ("pt0.5s", 500), (" 2H ", 7_200_000),
])
def test_durations(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "1h1h", "2h-", "P", "PT", "P1H", "1.5ms", "-2h", "2 h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(TimeParseError):
        parse_duration_ms(text)


@pytest.mark.parametrize("text, ms", [
    ("2026-12-01T10:00Z", NOW), ("2026-12-01T10:00:00z", NOW), ("2026-12-01T11:00+01:00", NOW),
    ("2026-12-01T05:30-04:30", NOW), ("2026-12-01T10:00:00.250Z", NOW + 250), ("2026-12-01", NOW - 36_000_000),
    ("1796119200000", NOW), ("0", 0), ("now", NOW), ("2h", NOW + 7_200_000), ("+2h", NOW + 7_200_000),
    ("-10m", NOW - 600_000), ("1d12h", NOW + 129_600_000),
])
def test_times(text, ms):
    assert parse_time_ms(text, now=NOW) == ms


@pytest.mark.parametrize("text, says", [
    ("2026-12-01T10:00", "no time zone"), ("2026-12-01 10:00", "no time zone"), ("tomorrow", "is not a time"),
    ("2026-13-01T10:00Z", "is not a time"), ("", "empty"), ("-100000d", "outside"), ("99999999999999999", "outside"),
])
def test_bad_times_say_why(text, says):
    with pytest.raises(TimeParseError, match=says):
        parse_time_ms(text, now=NOW)


def test_format_time_is_iso_utc_and_round_trips():
    assert format_time(NOW) == "2026-12-01T10:00:00Z"
    assert format_time(NOW + 7) == "2026-12-01T10:00:00.007Z"
    assert format_time(None) is None
    assert format_time("junk") == "junk"  # a field the node sent oddly is shown, not crashed on
    for ms in (0, NOW, NOW + 999, 4_102_444_800_123):
        assert parse_time_ms(format_time(ms)) == ms
    for ms in (500, 30_000, 5_400_000, 129_600_000, 93_784_005):
        assert parse_duration_ms(format_duration(ms)) == ms


def _probe(**types):
    @click.command()
    @click.option("--at", type=TIME)
    @click.option("--for", "span", type=types.get("span", DurationType()))
    def probe(at, span):
        click.echo(f"{at} {span}")

    return probe


def test_click_types_convert_and_fail_as_usage_errors():
    r = CliRunner().invoke(_probe(), ["--at", "1796119200000", "--for", "2h"])
    assert r.exit_code == 0 and r.output == f"{NOW} 7200000\n"
    r = CliRunner().invoke(_probe(), ["--at", "2026-12-01T10:00"])
    assert r.exit_code == 2 and "no time zone" in r.output
    r = CliRunner().invoke(_probe(), ["--for", "90"])
    assert r.exit_code == 2 and "has no unit" in r.output


def test_bare_unit_keeps_old_numbers_working_with_a_warning():
    cmd = _probe(span=DurationType(bare_unit="d", warn_bare=True, max_ms=3650 * 86_400_000))
    r = CliRunner().invoke(cmd, ["--for", "90"])
    assert r.exit_code == 0 and r.stdout == "None 7776000000\n"
    assert "read as days" in r.stderr and "90d" in r.stderr
    r = CliRunner().invoke(cmd, ["--for", "90d"])
    assert r.exit_code == 0 and r.stderr == ""
    r = CliRunner().invoke(cmd, ["--for", "3651d"])
    assert r.exit_code == 2 and "between" in r.output


def test_seconds_options_take_durations_and_bare_seconds():
    from cli.timeparse import seconds_option

    @click.command()
    @seconds_option("--timeout", default="30s", help="How long")
    @seconds_option("--grace", default="0s", min_s=0, max_s=600, help="Grace")
    def probe(timeout, grace):
        click.echo(f"{timeout!r} {grace!r}")

    assert CliRunner().invoke(probe, []).output == "30.0 0.0\n"
    assert CliRunner().invoke(probe, ["--timeout", "2m", "--grace", "1.5"]).output == "120.0 1.5\n"
    r = CliRunner().invoke(probe, ["--timeout", "500ms"])
    assert r.exit_code == 2 and "at least 1s" in r.output
    r = CliRunner().invoke(probe, ["--grace", "11m"])
    assert r.exit_code == 2 and "between 0s and 10m" in r.output


def test_cxl_timeouts_are_durations():
    from cli.main import cli

    r = CliRunner().invoke(cli, ["tx", "show", "ab" * 32, "--wait", "11m"])
    assert r.exit_code == 2 and "--wait" in r.output
    r = CliRunner().invoke(cli, ["tx", "transfer", "--key", "k", "--to", "cx", "--amount", "1", "--timeout", "0.2s"])
    assert r.exit_code == 2 and "--timeout" in r.output
