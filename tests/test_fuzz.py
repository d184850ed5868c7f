"""Fuzz test: hostile arguments to every public function and class of kmixup and to the
raw ops, on the compiled and the pure-PyTorch backend, each call held to "a named error,
or the oracle's answer" (the cases and the contract: tests/fuzz_cases.py).

The cases run in worker processes that report each case before starting the next. The
workers are forks of ``tests/fuzz_cases.py --fork-server``, started with this
interpreter and the backend's environment, which imports torch and kmixup once, so a new
worker costs a fork. If a worker dies (SIGSEGV, abort) or stops answering for
KMIXUP_FUZZ_TIMEOUT seconds, the case it was running fails as a crash or a hang (replayed
alone first, to tell a crash of its own from one of memory an earlier case corrupted)
and a new worker goes on at the next case. On Linux the workers run glibc's checking
malloc (KMIXUP_FUZZ_MALLOC_CHECK=0 turns it off), so a stray write aborts in the case
that made it. Every failing case is listed with a one-line command that replays it.

Environment:
    KMIXUP_FUZZ_CASES    cases per backend (default 500; e.g. 5000 for a long run)
    KMIXUP_FUZZ_START    first case index (default 0)
    KMIXUP_FUZZ_SEED     seed of the case generator (default fuzz_cases.DEFAULT_SEED)
    KMIXUP_FUZZ_TIMEOUT  seconds a case may run before it counts as a hang (default 20)
    KMIXUP_FUZZ_REPORT   a file to append every outcome to, as JSON lines
"""

from __future__ import annotations

import ctypes.util
import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from fuzz_cases import DEFAULT_SEED

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CASES = int(os.environ.get("KMIXUP_FUZZ_CASES", "500"))
START = int(os.environ.get("KMIXUP_FUZZ_START", "0"))
SEED = int(os.environ.get("KMIXUP_FUZZ_SEED", str(DEFAULT_SEED)))
TIMEOUT = float(os.environ.get("KMIXUP_FUZZ_TIMEOUT", "20"))
STARTUP_TIMEOUT = 180.0
REPORT = os.environ.get("KMIXUP_FUZZ_REPORT")
BACKENDS = ("compiled", "pure")
# The fork server passes sockets with SCM_RIGHTS over an AF_UNIX SOCK_SEQPACKET pair.
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the fuzz workers need Linux (fork, SOCK_SEQPACKET)")
MALLOC_DEBUG = ctypes.util.find_library("c_malloc_debug") if sys.platform == "linux" else None


def backend_env(backend: str, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.pop("KMIXUP_PURE", None)
    if backend == "pure":
        env["KMIXUP_PURE"] = "1"
    if MALLOC_DEBUG and env.get("KMIXUP_FUZZ_MALLOC_CHECK", "1") != "0":
        # glibc's checking malloc: an out-of-bounds write aborts at the next free, usually
        # in the case that made it, instead of cases later; freshly allocated memory is
        # filled with a pattern, so reads of uninitialised memory behave reproducibly.
        env["LD_PRELOAD"] = " ".join(p for p in (MALLOC_DEBUG, env.get("LD_PRELOAD")) if p)
        env.setdefault("MALLOC_CHECK_", "3")
        env.setdefault("MALLOC_PERTURB_", "165")
    # The worker imports this repository's kmixup, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def repro(backend: str, outcome: dict) -> str:
    """A one-line command that replays a failing case (a sequence for a late crash)."""
    prefix = "KMIXUP_PURE=1 " if backend == "pure" else ""
    which = (f"--range {outcome['range'][0]} {outcome['range'][1]}" if outcome.get("range")
             else f"--case {outcome['case']}")
    return (f"cd {shlex.quote(str(REPO))} && {prefix}{shlex.quote(sys.executable)} "
            f"tests/fuzz_cases.py --seed {SEED} {which}")


class ForkServer:
    """``fuzz_cases.py --fork-server``, started with this interpreter and the backend's
    environment: it imports torch and kmixup once and forks a fresh worker on request."""

    def __init__(self, backend: str, env_extra: dict | None = None):
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.stderr = tempfile.TemporaryFile()
        cmd = [sys.executable, "-X", "faulthandler", "-W", "ignore", str(HERE / "fuzz_cases.py"),
               "--seed", str(SEED), "--fork-server", str(theirs.fileno())]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr,
            env=backend_env(backend, env_extra), cwd=REPO, pass_fds=[theirs.fileno()])
        theirs.close()
        self.control.settimeout(STARTUP_TIMEOUT)
        try:
            self.hello = json.loads(self.control.recv(65536))["hello"]
        except (OSError, ValueError, KeyError) as err:
            self.close()
            raise RuntimeError(f"fuzz fork server did not start ({err!r}):\n"
                               f"{tail(self.stderr, 30)}") from None
        self.control.settimeout(60.0)

    def fork(self) -> Worker:
        mine, theirs = socket.socketpair()
        stderr = tempfile.TemporaryFile()
        socket.send_fds(self.control, [b"FORK"], [theirs.fileno(), stderr.fileno()])
        theirs.close()
        pid = int(self.control.recv(64).split()[1])
        return Worker(self, pid, mine, stderr)

    def wait(self, pid: int) -> int:
        """Reap a worker: its exit code, -signal if a signal ended it."""
        self.control.send(f"WAIT {pid}".encode())
        return int(self.control.recv(64).split()[1])

    def close(self) -> None:
        self.control.close()  # the server sees EOF and exits
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def tail(f, lines: int = 12) -> str:
    f.seek(0)
    return "\n".join(f.read().decode(errors="replace").strip().splitlines()[-lines:])


class Worker:
    """A forked worker: its socket, a thread queueing the lines it writes, its stderr."""

    def __init__(self, server: ForkServer, pid: int, sock: socket.socket, stderr):
        self.server, self.pid, self.sock, self.stderr = server, pid, sock, stderr
        self.first_case: int | None = None  # the first case this process ran
        self.lines: queue.Queue = queue.Queue()
        self.reader = sock.makefile("r")
        self.writer = sock.makefile("w")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.reader:
                self.lines.put(line)
        except (OSError, ValueError):
            pass
        self.lines.put(None)

    def next(self, timeout: float):
        """The next message (a dict), None when the worker's output ended, or "timeout"."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return "timeout"
        return None if line is None else json.loads(line)

    def run(self, start: int, stop: int) -> None:
        self.writer.write(f"RUN {start} {stop}\n")
        self.writer.flush()

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)  # its own session: the whole group
        except ProcessLookupError:
            pass

    def death(self) -> str:
        """How the worker ended (it is reaped)."""
        code = self.server.wait(self.pid)
        self.pid = None
        if code < 0:
            try:
                return f"crash ({signal.Signals(-code).name})"
            except ValueError:
                return f"crash (signal {-code})"
        return f"worker exited with code {code}"

    def stderr_tail(self, lines: int = 12) -> str:
        return tail(self.stderr, lines)

    def close(self) -> None:
        """End the worker (EOF on its socket; SIGKILL if it is still there) and reap it."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # also ends the reading thread's read
        except OSError:
            pass
        self.thread.join(timeout=10)
        for f in (self.writer, self.reader, self.sock):
            try:
                f.close()
            except OSError:
                pass
        if self.pid is not None:
            self.kill()
            self.server.wait(self.pid)
            self.pid = None
        self.stderr.close()


def take_worker(server: ForkServer, info: dict) -> Worker:
    """A freshly forked worker, once it has said hello."""
    worker = server.fork()
    info["workers"] += 1
    hello = worker.next(STARTUP_TIMEOUT)
    if not isinstance(hello, dict) or "hello" not in hello:
        text = worker.stderr_tail(30)
        worker.close()
        raise RuntimeError(f"fuzz worker did not start ({hello!r}):\n{text}")
    return worker


def drive(worker: Worker, start: int, stop: int, timeout: float):
    """Run cases [start, stop) on a worker: (outcomes, None) when it got through them, or
    (outcomes so far, death) when it died or hung, death being the outcome of the case it
    was running (the worker is then gone)."""
    if worker.first_case is None:
        worker.first_case = start
    worker.run(start, stop)
    outcomes, current = [], None  # current: the case begun and not yet reported
    while True:
        msg = worker.next(timeout)
        if isinstance(msg, dict) and "begin" in msg:
            current = msg
        elif isinstance(msg, dict) and "case" in msg:
            outcomes.append(msg)
            current = None
        elif isinstance(msg, dict) and msg.get("done"):
            return outcomes, None
        else:  # the worker died (None) or hangs ("timeout")
            if msg == "timeout":
                worker.kill()
                kind = f"hang (no answer in {timeout:g} s)"
            else:
                kind = worker.death()
            index = current["begin"] if current else (outcomes[-1]["case"] + 1 if outcomes
                                                      else start)
            death = {"case": index, "kind": kind, "detail": worker.stderr_tail(),
                     "target": (current or {}).get("target", "?"),
                     "desc": (current or {}).get("desc", "(died before announcing the case)"),
                     "tags": (current or {}).get("tags", []),
                     "process_from": worker.first_case}
            worker.close()
            return outcomes, death


def run_fuzz(backend: str, start: int, stop: int, timeout: float = TIMEOUT,
             env_extra: dict | None = None) -> tuple[list[dict], dict]:
    """Run cases [start, stop) on ``backend``; one outcome per case, in order.

    A worker's death is blamed on the case it was running. If that case was not the
    first one the process ran, it is replayed alone in a fresh worker: when it then
    passes, the death is recorded as happening "only after earlier cases" (an earlier
    case corrupted the process's memory), with the range to replay in sequence."""
    outcomes: dict[int, dict] = {}
    info: dict = {"workers": 0}
    server = ForkServer(backend, env_extra)
    info["backend_info"] = server.hello
    if backend == "compiled" and not server.hello["cpu"].startswith("compiled"):
        server.close()
        return [], info
    worker = None
    nxt, replay = start, None
    try:
        while nxt < stop or replay is not None:
            if worker is None:
                worker = take_worker(server, info)
            if replay is not None:
                death, replay = replay, None
                alone, died = drive(worker, death["case"], death["case"] + 1, timeout)
                if died is not None:  # it dies alone too
                    outcomes[died["case"]] = died
                    worker = None
                    continue
                first, index = death["process_from"], death["case"]
                if death["target"] == "?":  # it died between two cases: name the next one
                    death.update({k: alone[0][k] for k in ("target", "desc", "tags")})
                death["kind"] += " only after earlier cases in the same process"
                death["range"] = [first, index + 1]
                death["detail"] = (
                    f"alone, case {index} gives: {alone[0]['kind'] or 'the oracle answer'}; "
                    f"the process had run cases {first}..{index} (memory corrupted by an "
                    f"earlier case?)\n" + death["detail"])
                outcomes[index] = death
                continue
            done, death = drive(worker, nxt, stop, timeout)
            for outcome in done:
                outcomes[outcome["case"]] = outcome
            if death is None:
                nxt = stop
                continue
            worker, nxt = None, death["case"] + 1
            if death["case"] > death["process_from"]:
                replay = death
            else:
                outcomes[death["case"]] = death
    finally:
        if worker is not None:
            worker.close()
        server.close()
    return [outcomes[i] for i in sorted(outcomes)], info


def class_key(outcome: dict) -> tuple[str, str, str]:
    """Failure class: target, kind, and the hostile arguments without their values; for a
    valid argument refused, the message with its numbers blanked instead (one cause
    shows up whatever else the case corrupted)."""
    kind = outcome["kind"]
    if kind.startswith(("valid call raised", "error blames the valid argument")):
        message = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", outcome.get("detail", ""))
        return outcome["target"], kind, message.splitlines()[0][:90] if message else ""
    tags = sorted({t.split("=")[0] for t in outcome.get("tags", [])})
    return outcome["target"], kind, ", ".join(tags) or "valid call"


def report(backend: str, outcomes: list[dict], elapsed: float) -> str:
    failures = [o for o in outcomes if o["kind"]]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for o in failures:
        groups[class_key(o)].append(o)
    head = (f"fuzz [{backend}]: {len(failures)} of {len(outcomes)} cases broke the contract "
            f"(seed {SEED}, cases {START}-{START + CASES - 1}, {elapsed:.1f} s), "
            f"{len(groups)} failure classes:")
    lines = [head, ""]
    for (target, kind, tags), members in sorted(groups.items()):
        first = members[0]
        lines.append(f"* {target} | {kind} | {tags}: {len(members)} case(s), e.g. case "
                     f"{first['case']}")
        lines.append(f"    {first['desc'][:700]}")
        detail = (first.get("detail") or "").strip().replace("\n", "\n      ")
        lines.append(f"      {detail[:900]}")
        lines.append(f"    replay: {repro(backend, first)}")
    lines += ["", "every failing case:"]
    lines += [f"  case {o['case']} [{o['target']}] {o['kind']}: {repro(backend, o)}"
              for o in failures]
    return "\n".join(lines)


@pytest.mark.fuzz
@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz(backend):
    began = time.monotonic()
    outcomes, info = run_fuzz(backend, START, START + CASES)
    elapsed = time.monotonic() - began
    if not outcomes:
        msg = f"the compiled extension is not available: {info.get('backend_info')}"
        if os.environ.get("KMIXUP_EXPECT_COMPILED") == "cpu":
            pytest.fail(msg)
        pytest.skip(msg)
    assert [o["case"] for o in outcomes] == list(range(START, START + CASES))
    if REPORT:
        with open(REPORT, "a") as f:
            for o in outcomes:
                f.write(json.dumps({"backend": backend, **o}) + "\n")
    failures = [o for o in outcomes if o["kind"]]
    print(f"fuzz [{backend}]: {len(outcomes)} cases in {elapsed:.1f} s, "
          f"{info['workers']} worker(s), {len(failures)} failing")
    if failures:
        pytest.fail(report(backend, outcomes, elapsed), pytrace=False)


@pytest.mark.fuzz
def test_fuzz_harness_survives_crashes_and_hangs():
    """The supervisor itself, with the worker's self-test hooks: case 1 aborts unless it
    runs first in its process (a "late" crash, as from memory an earlier case corrupted)
    and case 2 hangs. Case 1 is replayed alone, passes, and is recorded as a crash only
    after earlier cases; the replaying worker goes on to case 2, which hangs there and
    again alone (a confirmed hang); case 3 runs in a fourth worker."""
    outcomes, info = run_fuzz("pure", 0, 4, timeout=2.0,
                              env_extra={"KMIXUP_FUZZ_SELFTEST": "late:1,hang:2"})
    assert [o["case"] for o in outcomes] == [0, 1, 2, 3]
    late, hang = outcomes[1], outcomes[2]
    assert late["kind"] == "crash (SIGABRT) only after earlier cases in the same process", late
    assert late["range"] == [0, 2] and "--range 0 2" in repro("pure", late)
    assert late["desc"] and late["target"] != "?"
    assert hang["kind"] == "hang (no answer in 2 s)", hang
    for ok in (outcomes[0], outcomes[3]):
        assert not (ok["kind"] or "").startswith(("crash", "hang")), ok
    assert info["workers"] == 4
