"""The per-service log buffer (svtree/core/logbuffer.py): bounded in lines and bytes
whatever is added, holds exactly the newest lines, and readers get every line once, in
order, or are told how many they missed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svtree.core.logbuffer import HEADER, MARKER, STDERR, STDOUT, LogBook, LogBuffer
from svtree.core.output import MAX_LINE


def blob_of(lines):
    return b"".join(line + b"\n" for line in lines)


def held(buf: LogBuffer):
    """Every (time, stream, line) the buffer holds, oldest first."""
    c = buf.cursor()
    out = []
    while (rec := buf.take(c)) is not None:
        when, stream, blob, n = rec
        lines = blob.split(b"\n")[:-1]
        assert len(lines) == n
        out += [(when, stream, line) for line in lines]
    return out


def test_it_keeps_the_newest_lines_with_their_time_and_stream():
    buf = LogBuffer(3)
    buf.add(STDOUT, blob_of([b"a", b"b"]), 2, 1.0)
    buf.add(STDERR, blob_of([b"c"]), 1, 2.0)
    buf.add_line(MARKER, b"--- x restarted (exit 1) ---", 3.0)
    assert held(buf) == [(1.0, STDOUT, b"b"), (2.0, STDERR, b"c"), (3.0, MARKER, b"--- x restarted (exit 1) ---")]
    assert (buf.first, buf.lines, buf.next_seq) == (1, 3, 4)


def test_more_lines_at_once_than_it_holds_keeps_the_last():
    buf = LogBuffer(2)
    buf.add(STDOUT, blob_of([b"1", b"2", b"3", b"4", b"5"]), 5, 1.0)
    assert [line for _, _, line in held(buf)] == [b"4", b"5"]
    assert buf.first == 3


def test_zero_lines_keeps_nothing():
    buf = LogBuffer(0)
    buf.add(STDOUT, b"x\n", 1, 1.0)
    assert held(buf) == [] and len(buf.buf) == 0


def test_a_line_is_cut_at_64_kib():
    buf = LogBuffer(10)
    buf.add_line(STDOUT, b"x" * (MAX_LINE + 100), 1.0)
    assert held(buf) == [(1.0, STDOUT, b"x" * MAX_LINE)]


def test_long_lines_push_out_older_ones_before_the_line_count_does():
    buf = LogBuffer(1000)  # about 1 MiB
    for i in range(100):
        buf.add_line(STDOUT, bytes([65 + i % 26]) * 60000, float(i))
    assert len(buf.buf) <= buf.max_bytes < 1000 * 1024 + MAX_LINE + 100
    assert 15 <= buf.lines <= 18  # ~1 MiB of 60 kB lines
    assert held(buf)[-1] == (99.0, STDOUT, bytes([65 + 99 % 26]) * 60000)


def test_memory_stays_bounded_whatever_is_printed():
    buf = LogBuffer(1000)
    for i in range(3000):
        buf.add(STDOUT, blob_of([b"y" * (i % 5000)] * 3), 3, float(i))
        assert len(buf.buf) <= buf.max_bytes and buf.lines <= 1000


def test_resize_trims_and_zero_clears():
    buf = LogBuffer(10)
    buf.add(STDOUT, blob_of([b"%d" % i for i in range(10)]), 10, 1.0)
    buf.resize(3)
    assert [line for _, _, line in held(buf)] == [b"7", b"8", b"9"]
    buf.resize(0)
    assert held(buf) == [] and buf.lines == 0


def test_tail_starts_inside_a_record():
    buf = LogBuffer(100)
    buf.add(STDOUT, blob_of([b"a", b"b", b"c"]), 3, 1.0)
    buf.add(STDOUT, blob_of([b"d", b"e"]), 2, 2.0)
    c = buf.cursor(last=4)
    assert buf.take(c) == (1.0, STDOUT, b"b\nc\n", 2)
    assert buf.take(c) == (2.0, STDOUT, b"d\ne\n", 2)
    assert buf.take(c) is None
    assert buf.take(buf.cursor(last=0)) is None
    assert buf.take(buf.cursor(last=99)) == (1.0, STDOUT, b"a\nb\nc\n", 3)


def test_a_snapshot_cursor_stops_where_the_buffer_ended():
    buf = LogBuffer(100)
    buf.add(STDOUT, b"a\n", 1, 1.0)
    snap, follow = buf.cursor(), buf.cursor(follow=True)
    buf.add(STDOUT, b"b\n", 1, 2.0)
    assert buf.take(snap)[2] == b"a\n" and buf.take(snap) is None and buf.done(snap)
    assert buf.take(follow)[2] == b"a\n" and buf.take(follow)[2] == b"b\n" and buf.take(follow) is None
    buf.add(STDOUT, b"c\n", 1, 3.0)
    assert not buf.done(follow) and buf.take(follow)[2] == b"c\n"


def test_an_overtaken_cursor_is_told_how_many_lines_it_missed():
    buf = LogBuffer(3)
    c = buf.cursor(follow=True)
    buf.add(STDOUT, blob_of([b"1", b"2"]), 2, 1.0)
    assert buf.catch_up(c) == 0
    assert buf.take(c)[2] == b"1\n2\n"
    buf.add(STDOUT, blob_of([b"3", b"4", b"5", b"6", b"7"]), 5, 2.0)  # holds 5 6 7
    assert buf.catch_up(c) == 2  # 3 and 4
    assert buf.take(c)[2] == b"5\n6\n7\n"


def test_a_cursor_inside_a_trimmed_record_misses_only_what_it_had_not_read():
    buf = LogBuffer(4)
    buf.add(STDOUT, blob_of([b"a", b"b", b"c", b"d"]), 4, 1.0)
    c = buf.cursor(last=2, follow=True)  # at c, d: a and b were never wanted
    buf.add(STDOUT, blob_of([b"e"]), 1, 2.0)  # a goes: the record is cut before b
    assert buf.catch_up(c) == 0
    assert buf.take(c) == (1.0, STDOUT, b"c\nd\n", 2)
    buf.add(STDOUT, blob_of([b"f", b"g", b"h", b"i"]), 4, 3.0)  # only f g h i stay
    assert buf.catch_up(c) == 1  # e
    assert buf.take(c) == (3.0, STDOUT, b"f\ng\nh\ni\n", 4)


def test_a_snapshot_overtaken_past_its_stop_misses_only_lines_before_the_stop():
    buf = LogBuffer(2)
    buf.add(STDOUT, blob_of([b"a", b"b"]), 2, 1.0)
    c = buf.cursor()
    buf.add(STDOUT, blob_of([b"c", b"d", b"e"]), 3, 2.0)
    assert buf.catch_up(c) == 2 and buf.done(c)


# --- properties -----------------------------------------------------------------------

records = st.lists(
    st.tuples(st.sampled_from([STDOUT, STDERR, MARKER]),
              st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")), min_size=1, max_size=6)),
    max_size=60)


@settings(max_examples=300, deadline=None)
@given(records=records, max_lines=st.integers(0, 12), max_bytes=st.integers(0, 2000),
       reads=st.lists(st.integers(0, 3), max_size=60))
def test_it_holds_the_newest_lines_within_its_bounds_and_readers_miss_nothing_silently(
        records, max_lines, max_bytes, reads):
    buf = LogBuffer(max_lines)
    if max_lines:
        buf.max_bytes = max_bytes  # a small byte bound, so that it matters here
    everything = []  # (time, stream, line), every line added
    follower = buf.cursor(follow=True)
    got, missed = [], 0
    for i, (stream, lines) in enumerate(records):
        buf.add(stream, blob_of(lines), len(lines), float(i))
        everything += [(float(i), stream, line) for line in lines]
        assert buf.lines <= max_lines and len(buf.buf) <= buf.max_bytes
        kept = held(buf)
        assert kept == everything[len(everything) - len(kept):]  # the newest, in order
        assert buf.next_seq == len(everything) and buf.first == len(everything) - len(kept)
        if len(kept) < len(everything) and buf.lines < max_lines:
            # Dropped for bytes: one more line would not have fitted.
            older = everything[len(everything) - len(kept) - 1][2]
            assert len(buf.buf) + len(older) + 1 + HEADER.size > buf.max_bytes
        for _ in range(reads[i] if i < len(reads) else 1):
            missed += buf.catch_up(follower)
            rec = buf.take(follower)
            if rec is None:
                break
            when, stream2, blob, n = rec
            got += [(when, stream2, line) for line in blob.split(b"\n")[:-1]]
    while True:
        missed += buf.catch_up(follower)
        rec = buf.take(follower)
        if rec is None:
            break
        got += [(rec[0], rec[1], line) for line in rec[2].split(b"\n")[:-1]]
    # The follower read some prefix, skipped `missed` lines in runs, read the rest: all
    # it got is in order, and it got or was told of every line.
    assert len(got) + missed == len(everything)
    positions = iter(range(len(everything)))
    assert all(any(everything[p] == line for p in positions) for line in got)


def test_the_book_tells_watchers_which_service_printed():
    book = LogBook(10)
    heard = []
    book.watch(heard.append)
    book.add("web", STDOUT, b"x\n", 1, 1.0)
    book.add_line("db", MARKER, b"--- db restarted (exit 1) ---", 2.0)
    book.unwatch(heard.append)
    book.add("web", STDOUT, b"y\n", 1, 3.0)
    assert heard == ["web", "db"]
    assert book.buffer("web").lines == 2
    book.resize(1)
    assert book.buffer("web").lines == 1
    book.forget("web")
    assert "web" not in book.buffers


def test_a_marker_goes_between_runs_once_the_old_runs_output_is_read():
    book = LogBook(10)
    book.run_started("web", 1.0)
    book.add("web", STDOUT, b"first\n", 1, 2.0)
    book.run_output_read("web", "exit 1", 3.0)  # the common order: all read, then restarted
    book.run_started("web", 4.0)
    book.add("web", STDOUT, b"second\n", 1, 5.0)
    assert held(book.buffer("web")) == [(2.0, STDOUT, b"first"), (4.0, MARKER, b"--- web restarted (exit 1) ---"),
                                        (5.0, STDOUT, b"second")]
    book.run_started("web", 6.0)  # reported before the second run's last line was read
    assert held(book.buffer("web"))[-1] == (5.0, STDOUT, b"second")
    book.add("web", STDOUT, b"late\n", 1, 7.0)
    book.run_output_read("web", "exit 2", 8.0)
    assert held(book.buffer("web"))[-2:] == [(7.0, STDOUT, b"late"), (8.0, MARKER, b"--- web restarted (exit 2) ---")]


def test_the_next_runs_line_read_before_its_report_comes_after_the_marker():
    """The pipe and the monitor's socket are read in no set order: the new run's first
    line may be read before the report that it started. The marker goes before that line,
    and the report then adds no second marker; the run after it gets its own."""
    book = LogBook(10)
    book.run_started("web", 1.0)
    book.add("web", STDOUT, b"bye\n", 1, 2.0)
    book.run_output_read("web", "exit 1", 3.0)
    book.add("web", STDOUT, b"start 2\n", 1, 4.0)
    book.run_started("web", 5.0)
    book.add("web", STDOUT, b"more\n", 1, 6.0)
    assert held(book.buffer("web")) == [(2.0, STDOUT, b"bye"), (4.0, MARKER, b"--- web restarted (exit 1) ---"),
                                        (4.0, STDOUT, b"start 2"), (6.0, STDOUT, b"more")]
    book.run_output_read("web", "exit 2", 7.0)
    book.run_started("web", 8.0)
    assert held(book.buffer("web"))[-1] == (8.0, MARKER, b"--- web restarted (exit 2) ---")


def test_a_service_that_ends_for_good_gets_no_marker():
    book = LogBook(10)
    book.run_started("job", 1.0)
    book.run_output_read("job", "exit 0", 2.0)
    assert held(book.buffer("job")) == []


@pytest.mark.parametrize("line_size", [10, 100, 1000])
def test_a_full_buffer_costs_its_lines_and_17_bytes_a_record(line_size):
    buf = LogBuffer(1000)
    for i in range(2000):
        buf.add_line(STDOUT, b"z" * line_size, float(i))
    assert buf.lines == 1000
    assert len(buf.buf) == 1000 * (line_size + 1 + HEADER.size)
