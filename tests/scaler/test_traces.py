"""scaler.traces: the one reader of timestamp,value CSVs, strict about the format."""

from __future__ import annotations

import pytest

from scaler.traces import TraceError, parse_time, read_rows, read_trace


def write(tmp_path, text, name="load.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


# the bad files a new user fed `foresight detect` (issue 16), and what each must say
BAD_FILES = [
    ("time,requests\n2025-03-02 10:00:00,5\n", ":1: header is 'time,requests', expected 'timestamp,value'"),
    ("timestamp,value\n2025-03-02 10:00:00,5\n2025-03-02 10:05:00,n/a\n", ":3: value 'n/a' is not a number"),
    ("timestamp,value\n03/2/2025 10:00,5\n", ":2: timestamp '03/2/2025 10:00' is neither ISO-8601"),
    ("", ": the file is empty; expected a header 'timestamp,value'"),
    ("timestamp;value\n2025-03-02 10:00:00;5\n", ":1: fields are separated by semicolons; expected commas"),
    ("timestamp,value\n", ": no data rows after the header"),
    ("timestamp,value\n2025-03-02 10:00:00,5,7\n", ":2: expected 2 comma-separated fields"),
    ("timestamp,value\n2025-03-02 10:00:00,nan\n", ":2: value 'nan' is not a finite number"),
    ("timestamp,value\n1700000000000,5\n", ":2: timestamp '1700000000000' is out of range"),
]


@pytest.mark.parametrize("text, message", BAD_FILES, ids=[
    "header", "n/a", "us-date", "empty", "semicolons", "header-only", "three-fields", "nan", "millis"])
def test_each_bad_file_is_rejected_naming_the_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value).startswith(f"{path}{message}")
    assert isinstance(info.value, ValueError), "callers that catch ValueError keep working"


def test_rows_keep_file_order_repeats_and_steps_back(tmp_path):
    path = write(tmp_path, "timestamp,value\n"
                 "2014-04-10 00:05:00,1\n2014-04-10 00:05:00,2\n2014-04-10 00:00:00,3\n\n60,4\n")
    ts, values, raw = read_trace(path)
    assert ts == [1397088300.0, 1397088300.0, 1397088000.0, 60.0]
    assert values == [1.0, 2.0, 3.0, 4.0]
    assert raw == ["2014-04-10 00:05:00", "2014-04-10 00:05:00", "2014-04-10 00:00:00", "60"]
    assert [r.line for r in read_rows(path)] == [2, 3, 4, 6], "lines as in the file (blank line skipped)"


def test_header_is_case_and_space_insensitive_and_crlf_is_fine(tmp_path):
    path = write(tmp_path, "Timestamp, Value\r\n2014-04-10T00:00:00Z,1.5\r\n")
    assert read_trace(path) == ([1397088000.0], [1.5], ["2014-04-10T00:00:00Z"])


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_trace(tmp_path / "nope.csv")


def test_binary_file(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(b"timestamp,value\n\xff\xfe,1\n")
    with pytest.raises(TraceError, match="not a UTF-8 text file"):
        read_trace(p)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2014-04-10 00:02:00", 1397088120.0),
        ("2014-04-10T00:02:00", 1397088120.0),
        ("2014-04-10T00:02:00Z", 1397088120.0),
        ("2014-04-10T02:02:00+02:00", 1397088120.0),
        ("1397088120", 1397088120.0),
        ("1397088120.5", 1397088120.5),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["garbage", "", "03/2/2025 10:00", "-5", "inf"])
def test_parse_time_rejects(text):
    with pytest.raises(ValueError, match="timestamp"):
        parse_time(text)
