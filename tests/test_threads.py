"""Threads misusing a stream, and interrupts at arbitrary moments (API.md "Threads").

Issue 11, defects 4 and 5.  Two readers at once, or two writers at once, are serialised: each
operation is whole, and the bytes seen equal the bytes sent, never one lost, duplicated or
invented.  ``close()`` from another thread always works, also during a flush that is stuck.
A KeyboardInterrupt raised at random moments inside library calls either leaves everything
exact or breaks the stream, which then says so on every later operation.
"""

from __future__ import annotations

import random
import signal
import socket
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sockstream
from conftest import BUFFER_IMPLS, LONG, Make, PeerThread, drain, use_buffers
from sockstream import SocketIOError, SocketStream

RECORD = 9  # "%08d\n"
N = 20000


def records(n: int, start: int = 0) -> bytes:
    return b"".join(b"%08d\n" % i for i in range(start, start + n))


def send_all(sock: socket.socket, data: bytes) -> PeerThread:
    def go() -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    t = PeerThread(go)
    t.start()
    return t


# ---- two readers ----------------------------------------------------------------------------


def _reader(s: SocketStream, got: list[bytes], seed: int) -> None:
    rnd = random.Random(seed)
    buf = bytearray(RECORD)
    while True:
        how = rnd.randrange(5)
        if how == 0:
            line = s.readline()
        elif how == 1:
            line = s.read(RECORD)
        elif how == 2:
            n = s.read_sequence(buf)
            line = bytes(buf[:n])
        elif how == 3:
            text, missing = s.read_line(eof_error=False, eof_value=None)
            line = b"" if text is None else (text.encode("latin-1") + (b"" if missing else b"\n"))
        else:
            try:
                line = s.read(RECORD * 3)  # three whole records at once
            except RuntimeError:
                # It overlapped the other reader's at a byte window's end: refused, nothing
                # read (API.md "Threads"; tests/test_window_read.py).
                continue
        if not line:
            return
        got.append(line if isinstance(line, bytes) else line.encode("latin-1"))


@pytest.mark.parametrize("element_type", ["base-char", "unsigned-byte-8"])
def test_two_readers_see_every_byte_once(make: Make, element_type: str) -> None:
    s, peer = make(element_type)
    _two_readers_get_every_record_once(s, peer, records(N), _reader, (0, 1))


def _two_readers_get_every_record_once(
    s: SocketStream,
    peer: socket.socket,
    data: bytes,
    reader: Callable[[SocketStream, list[bytes], int], None],
    seeds: tuple[int, int],
) -> None:
    """The peer sends ``data`` and shuts down; ``reader(s, got, seed)`` in two threads."""
    sender = send_all(peer, data)
    got: list[list[bytes]] = [[], []]
    threads = [PeerThread(reader, s, got[i], seeds[i]) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join_checked()
    sender.join_checked()
    pieces = [p for g in got for p in g]
    # Each operation is whole: every piece is a run of whole records...
    assert all(len(p) % RECORD == 0 for p in pieces)
    seen = sorted(p[i : i + RECORD] for p in pieces for i in range(0, len(p), RECORD))
    # ...and together they are every record exactly once.
    assert b"".join(seen) == data


def _line_mixer(s: SocketStream, mine: list[bytes], seed: int) -> None:
    """One of two readers: lines, ``read`` and ``read_sequence`` in a random mix."""
    rnd, buf = random.Random(seed), bytearray(RECORD)
    while True:
        if rnd.randrange(2):
            text, missing = s.read_line(eof_error=False, eof_value=None)
            if text is None:
                return
            line = text if isinstance(text, bytes) else text.encode("latin-1")
            mine.append(line + (b"" if missing else b"\n"))
        elif rnd.randrange(2):
            raw = s.read(RECORD)
            if not raw:
                return
            mine.append(raw if isinstance(raw, bytes) else raw.encode("latin-1"))
        else:
            n = s.read_sequence(buf)
            if not n:
                return
            mine.append(bytes(buf[:n]))


@pytest.mark.parametrize("impl", BUFFER_IMPLS)
@pytest.mark.parametrize("element_type", ["base-char", "unsigned-byte-8"])
def test_read_line_batches_against_another_reader(
    fast_switching: None, impl: str, element_type: str
) -> None:
    """Two threads mixing ``read_line`` (batches of lines) with ``read`` and ``read_sequence``
    (each settles the batch): every record once.  Once a batch's iterator was published after a
    call that let the other thread settle it in between, and its lines were served twice."""
    undo = use_buffers(impl)
    try:
        for trial in range(8):
            a, b = socket.socketpair()
            s = SocketStream(a, "io", element_type)
            try:
                _two_readers_get_every_record_once(
                    s, b, records(N, trial * N), _line_mixer, (trial * 2, trial * 2 + 1)
                )
            finally:
                s.close()
                b.close()
    finally:
        undo()


def test_two_readers_of_chars_and_bytes(make: Make) -> None:
    """Character-at-a-time and byte reads from two threads: the union is the input, once."""
    s, peer = make("unsigned-byte-8")
    data = bytes(range(256)) * 200
    sender = send_all(peer, data)
    counts = [[0] * 256, [0] * 256]

    def reader(i: int) -> None:
        c = counts[i]
        while True:
            if i:
                b = s.read_byte(eof_error=False, eof_value=-1)
                if b < 0:
                    return
                c[b] += 1
            else:
                ch = s.read_char(eof_error=False, eof_value=None)
                if ch is None:
                    return
                c[ord(ch)] += 1

    threads = [PeerThread(reader, i) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join_checked()
    sender.join_checked()
    assert [a + b for a, b in zip(*counts, strict=True)] == [200] * 256


# ---- two writers ------------------------------------------------------------------------------


def test_two_writers_every_line_once_and_whole(make: Make) -> None:
    s, peer = make()
    result: list[bytes] = []
    collector = PeerThread(lambda: result.append(drain(peer)))
    collector.start()

    def writer(w: int) -> None:
        rnd = random.Random(w)
        for i in range(5000):
            line = f"{w}:{i:06d}"
            how = rnd.randrange(4)
            if how == 0:
                s.write_line(line)
            elif how == 1:
                s.write(line + "\n")
            elif how == 2:
                s.write_sequence((line + "\n").encode())
            else:
                s.write_string(line + "\n")
            if rnd.randrange(20) == 0:
                s.flush()

    threads = [PeerThread(writer, w) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join_checked()
    s.flush()
    s.shutdown_output()
    collector.join_checked()
    lines = result[0].split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert sorted(lines) == sorted(f"{w}:{i:06d}".encode() for w in range(2) for i in range(5000))
    for w in range(2):  # each writer's lines in its own order
        mine = [ln for ln in lines if ln.startswith(b"%d:" % w)]
        assert mine == sorted(mine)


def test_two_writers_flushing_big_chunks(make: Make) -> None:
    """Large writes (each flushes) from two threads: no BufferError, nothing garbled."""
    s, peer = make("unsigned-byte-8")
    result: list[bytes] = []
    collector = PeerThread(lambda: result.append(drain(peer)))
    collector.start()
    chunks = {w: bytes([65 + w]) * 100_000 for w in range(2)}

    def writer(w: int) -> None:
        for _ in range(20):
            s.write(chunks[w])

    threads = [PeerThread(writer, w) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join_checked()
    s.shutdown_output()
    collector.join_checked()
    out = result[0]
    assert out.count(b"A") == out.count(b"B") == 2_000_000
    # Each write is whole: runs of one letter are multiples of a chunk.
    runs = [len(r) for r in out.replace(b"AB", b"A B").replace(b"BA", b"B A").split(b" ")]
    assert all(r % 100_000 == 0 for r in runs)


# ---- close from another thread ------------------------------------------------------------


def test_close_during_a_stuck_flush(make: Make) -> None:
    """close() while another thread's flush is blocked: no RuntimeError; the writer is woken."""
    s, _peer = make("unsigned-byte-8")
    started = threading.Event()
    outcome: list[BaseException] = []

    def writer() -> None:
        started.set()
        try:
            s.write(b"z" * (16 * 1024 * 1024))
            s.flush()
        except (ValueError, SocketIOError) as exc:
            outcome.append(exc)

    t = PeerThread(writer)
    t.start()
    assert started.wait(LONG)
    from test_faults import wait_until_blocked

    assert t.native_id is not None
    wait_until_blocked(t.native_id)
    s.close()  # must not raise (and must not poll concurrently with the writer)
    t.join_checked()
    assert s.closed
    assert outcome
    assert isinstance(outcome[0], (ValueError, SocketIOError))


def test_close_wakes_two_blocked_readers(make: Make) -> None:
    s, _peer = make()
    results: list[object] = []

    def reader() -> None:
        try:
            results.append(s.read_line(eof_error=False, eof_value="EOF"))
        except ValueError as exc:
            results.append(exc)

    threads = [PeerThread(reader) for _ in range(2)]
    for t in threads:
        t.start()
    from test_faults import wait_until_blocked

    for t in threads:
        while t.native_id is None:  # pragma: no cover - set by start()
            pass
    wait_until_blocked(threads[0].native_id)  # type: ignore[arg-type]
    s.close()
    for t in threads:
        t.join_checked()
    assert len(results) == 2
    for r in results:
        assert r == ("EOF", True) or isinstance(r, ValueError)


# ---- KeyboardInterrupt at arbitrary moments ------------------------------------------------


#: The interrupter also raises in these functions' frames: a C verb runs no Python code, so
#: the handler runs (and raises) in its caller, after it.
_ARMED_CODE: set[Any] = set()
_ARMED_HITS = [0]  # how many landed there


@pytest.fixture
def interrupter() -> Iterator[Callable[[bool | None], int]]:
    """Raise KeyboardInterrupt in the main thread every 0.05-1 ms, but only inside sockstream.

    The handler runs where the main thread was when the signal was noticed; it raises only if
    that frame is library code, so an interrupt never lands in the test's own bookkeeping.
    """
    if not hasattr(signal, "pthread_kill"):
        pytest.skip("needs signal.pthread_kill")
    old = signal.getsignal(signal.SIGUSR2)
    fired = [0]

    def handler(signum: int, frame: Any) -> None:
        if frame is not None and (
            "/sockstream/" in frame.f_code.co_filename or frame.f_code in _ARMED_CODE
        ):
            fired[0] += 1
            if "/sockstream/" not in frame.f_code.co_filename:
                _ARMED_HITS[0] += 1
            raise KeyboardInterrupt

    signal.signal(signal.SIGUSR2, handler)
    stop = threading.Event()
    main = threading.main_thread().ident
    assert main is not None

    def go() -> None:
        rnd = random.Random(7)
        while not stop.wait(rnd.uniform(0.00005, 0.001)):
            signal.pthread_kill(main, signal.SIGUSR2)

    t = threading.Thread(target=go, daemon=True)

    def switch(on: bool | None) -> int:
        """Start (True) or stop (False) the interrupts; how many were raised so far."""
        if on:
            t.start()
        elif on is not None:
            stop.set()
            t.join(LONG)
        return fired[0]

    yield switch
    stop.set()
    if t.is_alive():
        t.join(LONG)
    signal.signal(signal.SIGUSR2, old)


#: Rounds go on until this many interrupts landed inside library calls (or MAX_ROUNDS).
INTERRUPTS = 40
MAX_ROUNDS = 400


def new_pair(**kw: Any) -> tuple[SocketStream, socket.socket]:
    """A stream over a socketpair; again if an interrupt lands in the constructor (which then
    closes its socket, as API.md says)."""
    while True:
        a, b = socket.socketpair()
        try:
            return SocketStream(a, **kw), b
        except KeyboardInterrupt:
            assert a.fileno() == -1
            b.close()


def close_quietly(s: SocketStream, abort: bool = False) -> None:
    """close(), again if an interrupt lands in it (close is idempotent and always completes)."""
    while True:
        try:
            s.close(abort=abort)
            return
        except KeyboardInterrupt:
            continue
        except SocketIOError:
            s.close(abort=True)
            return


def _read_with_interrupts(
    s: SocketStream, data: bytes, rnd: random.Random, enc: str = "latin-1", nl: str = "\n"
) -> str:
    """Read everything with random verbs, going on after each KeyboardInterrupt.

    With the extension the verbs are C: an interrupt lands in the Python code they call for
    what they do not serve (refills, waiting), never between their commit and their return.
    In Python code it may land after the commit, in the library's frames on the way back
    (after ``bytes(out)`` in a large read, after the batch's C callable in ``readline``): the
    verb's whole result is lost then, as with an interrupt just after it returned (nothing
    does better in CPython; tests/test_read_interrupts.py).  So each interrupt may have lost
    exactly one whole result of its verb, and nothing else.
    """
    got = bytearray()
    buf = bytearray(RECORD * 2)
    delim = nl.encode(enc)
    cuts: list[tuple[int, int]] = []  # (len(got), the verb's size) at each interrupt
    while True:
        size = 0  # what the verb takes: 0 a line (or up to a delimiter), else at most size
        try:
            how = rnd.randrange(10)
            if how == 0:
                piece = s.readline().encode(enc)
            elif how == 1:
                size = rnd.randrange(1, 40)
                piece = s.read(size).encode(enc)
            elif how == 2:
                size = len(buf)
                n = s.read_sequence(buf)
                piece = bytes(buf[:n])
            elif how == 3:
                size = 1  # (the records are ASCII: a character is a byte)
                ch = s.read_char(eof_error=False, eof_value="")
                piece = ch.encode(enc)
            elif how == 4:
                line, missing = s.read_line(eof_error=False, eof_value="")
                piece = line.encode(enc) + (b"" if missing else delim)
            elif how == 5:
                piece = next(s, "").encode(enc)  # iteration (C's tp_iternext)
            elif how == 6:
                found, missing = s.read_until(delim, eof_error=False, eof_value="")
                piece = found.encode(enc) + (b"" if missing else delim)
            elif how == 7:
                size = 1
                ahead = s.peek_char(False, "")
                ch = s.read_char(False, "")
                assert ch == ahead
                piece = ch.encode(enc)
            elif how == 8:
                s.listen()  # (it only looks)
                continue
            else:
                size = 20000
                piece = s.read(20000).encode(enc)  # large: straight into our memory
        except KeyboardInterrupt:
            cuts.append((len(got), size))
            continue
        except SocketIOError as exc:
            assert "broken" in str(exc)  # noqa: PT017 (the loop goes on after other errors)
            # nothing duplicated or invented before the break
            assert _whole_results_lost(bytes(got), data, cuts, delim, prefix=True)
            with pytest.raises(SocketIOError, match="broken"):
                s.read_char()
            return "broken"
        if not piece:
            break
        got += piece
    assert _whole_results_lost(bytes(got), data, cuts, delim)
    return "exact"


def _whole_results_lost(
    got: bytes, data: bytes, cuts: list[tuple[int, int]], delim: bytes, prefix: bool = False
) -> bool:
    """Whether ``got`` is ``data`` (``prefix``: the start of it) with, at some interrupts
    (``cuts``: where in ``got`` each came, and its verb's size; 0 for a line), one whole
    result of the verb missing."""
    failed: set[tuple[int, int]] = set()

    def walk(c: int, i: int, j: int) -> bool:
        if c == len(cuts):
            return data[i:].startswith(got[j:]) if prefix else got[j:] == data[i:]
        at, size = cuts[c]
        if got[j:at] != data[i : i + at - j] or (c, i) in failed:
            return False
        i += at - j
        if size:
            lost = min(size, len(data) - i)
        else:
            end = data.find(delim, i)
            lost = len(data) - i if end < 0 else end + len(delim) - i
        if walk(c + 1, i, at) or walk(c + 1, i + lost, at):
            return True
        failed.add((c, i - at + j))
        return False

    return walk(0, 0, 0)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    ("enc", "nl"),
    [("latin-1", "\n"), ("utf-8", "\n"), ("utf-8", "\r\n")],
    ids=["plain", "utf-8", "crlf"],
)
def test_keyboard_interrupts_while_reading_lose_nothing_silently(
    interrupter: Callable[[bool | None], int], enc: str, nl: str
) -> None:
    """Each round: exact, or broken and saying so (an interrupt right after a recv).  The plain
    buffer (Latin-1, LF) and the text buffer (UTF-8, LF or CRLF), both in C with the
    extension."""
    rnd = random.Random(3)
    data = records(20000)
    if nl != "\n":
        data = data.replace(b"\n", nl.encode(enc))
    outcomes: list[str] = []
    interrupter(True)
    while interrupter(None) < INTERRUPTS and len(outcomes) < MAX_ROUNDS:
        s, b = new_pair(encoding=enc, newline=nl)
        if sockstream.ACCELERATED:
            for verb in (s.read_until, s.peek_char, s.listen, s.readline, s.read_char):
                assert type(verb) is types.BuiltinMethodType
        with b:
            try:
                sender = send_all(b, data)
                outcomes.append(_read_with_interrupts(s, data, rnd, enc, nl))
                sender.join_checked()
            finally:
                close_quietly(s, abort=True)
    assert interrupter(False) >= INTERRUPTS


def _write_with_interrupts(s: SocketStream, peer: socket.socket) -> str:
    result: list[bytes] = []
    collector = PeerThread(lambda: result.append(drain(peer)))
    collector.start()
    returned: set[int] = set()
    outcome = "exact"
    try:
        for i in range(5000):
            try:
                s.write_line(f"{i:08d}")
                if i % 7 == 0:
                    s.flush()
                returned.add(i)
            except KeyboardInterrupt:
                continue
        while True:
            try:
                s.flush()
                break
            except KeyboardInterrupt:
                continue
    except SocketIOError as exc:
        assert "broken" in str(exc)  # noqa: PT017 (the loop goes on after other errors)
        outcome = "broken"
    # Closing (with the interrupts still coming) must end the connection either way.
    close_quietly(s, abort=outcome == "broken")
    collector.join_checked()
    lines = result[0].split(b"\n")
    lines.pop()
    numbers = [int(x) for x in lines]
    assert numbers == sorted(set(numbers))  # never a line twice, never out of order
    if outcome == "exact":
        assert returned <= set(numbers)  # every write that returned arrived
    return outcome


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_keyboard_interrupts_while_writing_never_duplicate(
    interrupter: Callable[[bool | None], int],
) -> None:
    interrupter(True)
    rounds = 0
    while interrupter(None) < INTERRUPTS and rounds < MAX_ROUNDS:
        rounds += 1
        s, b = new_pair()
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with b:
            try:
                _write_with_interrupts(s, b)
            finally:
                close_quietly(s, abort=True)
    assert interrupter(False) >= INTERRUPTS


def _armed_run(write: Callable[[str], None], texts: list[str], pos: list[int], n: int) -> None:
    """``write(texts[pos[0]])``, then ``pos[0] += 1``, up to n.  The interrupter arms this frame
    too: interrupts land right after a verb returned (C) or at the loop's jump, so the write
    of the index where one stopped it may have been done or not."""
    while pos[0] < n:
        write(texts[pos[0]])
        pos[0] += 1


def _write_lines_armed(s: SocketStream, peer: socket.socket) -> str:
    """Numbered lines by ``write_line`` and ``write_string``, interrupted also between the
    verbs' calls: each line arrives once, in order, whole; with no break, every line whose
    write returned arrived, and of those an interrupt stopped, any subset."""
    result: list[bytes] = []
    collector = PeerThread(lambda: result.append(drain(peer)))
    collector.start()
    n = 5000
    bare = [f"{i:08d}" for i in range(n)]
    ended = [t + "\n" for t in bare]
    maybe: set[int] = set()
    outcome = "exact"
    try:
        pos = [0]
        while pos[0] < n:
            chunk = pos[0] // 250
            write, texts = (s.write_line, bare) if chunk % 2 == 0 else (s.write_string, ended)
            try:
                _armed_run(write, texts, pos, min(n, (chunk + 1) * 250))
            except KeyboardInterrupt:
                maybe.add(pos[0])
                pos[0] += 1  # (never written twice: a retry would look like a duplicate)
            try:
                s.flush()
            except KeyboardInterrupt:
                pass  # the rest stays buffered and goes with the next flush
        while True:
            try:
                s.flush()
                break
            except KeyboardInterrupt:
                continue
    except SocketIOError as exc:
        assert "broken" in str(exc)  # noqa: PT017 (the loop goes on after other errors)
        outcome = "broken"
    close_quietly(s, abort=outcome == "broken")
    collector.join_checked()
    lines = result[0].split(b"\n")
    assert lines.pop() == b""  # whole lines only: a write is never half done
    numbers = [int(x) for x in lines]
    assert numbers == sorted(set(numbers))  # never a line twice, never out of order
    assert set(numbers) <= set(range(n))
    if outcome == "exact":
        assert set(range(n)) - maybe <= set(numbers)  # every write that returned arrived
    return outcome


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_keyboard_interrupts_around_each_write_call(
    interrupter: Callable[[bool | None], int],
) -> None:
    """The interrupts of the test above, also landing between the writing verbs' calls (with
    the C twin a verb is one call with no Python code inside: this is where they land)."""
    _ARMED_CODE.add(_armed_run.__code__)
    _ARMED_HITS[0] = 0
    # With the twin, go on until enough landed in the writing loop itself, not only in the
    # library's frames (with the pure verbs, most land inside them: they are library frames).
    wanted = INTERRUPTS // 2 if sockstream.ACCELERATED else 0
    # The interrupting thread needs the GIL to send each signal, and a loop of C calls keeps
    # it: a short switch interval lets it in while the loop runs.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.00005)
    try:
        interrupter(True)
        rounds = 0
        while (
            interrupter(None) < INTERRUPTS or _ARMED_HITS[0] < wanted
        ) and rounds < 4 * MAX_ROUNDS:
            rounds += 1
            s, b = new_pair()
            with b:
                try:
                    _write_lines_armed(s, b)
                finally:
                    close_quietly(s, abort=True)
        assert interrupter(False) >= INTERRUPTS
        assert _ARMED_HITS[0] >= wanted
    finally:
        sys.setswitchinterval(switch)
        _ARMED_CODE.discard(_armed_run.__code__)
