"""How long each step of the event loop runs: CPU on the loop thread, and what the rest of its wall time was.

asyncio's debug mode logs "Executing <handle> took X seconds" for every step over
``loop.slow_callback_duration``, but that is **wall** time: on a loaded machine a step also waits for
a CPU (other threads and processes run: the run queue) and for the GIL (another thread of the server
holds it), so it cannot tell loop work from waiting. This wraps ``asyncio.Handle._run`` (every callback
and task step goes through it) and reads, around each step, ``time.thread_time()`` (CPU the loop thread
used) and the kernel's run-queue wait for the thread (``/proc/thread-self/schedstat``). What is left,
``wall - cpu - runq``, is time the thread slept inside the step: the GIL, in practice.

Run a server under it (``tests/e2e/test_event_loop.py`` does)::

    CALLBOT_LOOPWATCH_OUT=/tmp/steps.jsonl python -m callbot_testing.loopwatch serve

Settings (environment): ``CALLBOT_LOOPWATCH_OUT`` (JSON lines; stderr without it),
``CALLBOT_LOOPWATCH_MS`` (write steps with at least this much CPU, default 10),
``CALLBOT_LOOPWATCH_WALL_MS`` (or this much wall time, default 20), ``CALLBOT_LOOPWATCH_SLOW``
(asyncio's ``slow_callback_duration``, default 0.02 s: its own "Executing ... took" warnings go to the
server log), ``CALLBOT_LOOPWATCH_SAMPLE=1`` (a helper thread takes the loop thread's Python stack every
2 ms while a step runs over 5 ms, and the other threads' stacks when it could not run for 20 ms: a
cheap profiler of slow steps; it competes for the GIL, so leave it off when timing).

Rows: a step ``{time, wall_ms, cpu_ms, runq_ms, gil_ms, handle[, gc_ms, gc_generation][, stacks]}``
(``gc_ms``: a cyclic collection the loop thread ran inside the step); ``{gc_elsewhere_ms, thread}`` (a
collection over 5 ms in another thread: it held the GIL); ``{installed: ...}`` at start. Signals:
SIGUSR2 writes ``{stats: {steps, cpu_s, max_cpu_ms, max_cpu_handle, max_wall_ms}}`` since the last
SIGUSR2 and starts counting again; SIGUSR1 runs a full collection of the cyclic GC in a loop step
(what the calls' allocations trigger now and then) and writes ``{full_collect: {cpu_ms, wall_ms, ...}}``.
Test and bench tooling only.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from asyncio import events

_state: dict = {}


def _handle_repr(handle: events.Handle) -> str:
    cb = getattr(handle, "_callback", None)
    task = getattr(cb, "__self__", None)
    if isinstance(task, asyncio.Task):  # a task step: name the coroutine (and where it is suspended)
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
        return f"Task {task.get_name()} {getattr(coro, '__qualname__', coro)!s}{where}"
    try:
        return repr(handle)
    except Exception:  # pragma: no cover - a repr that fails must not break the loop
        return object.__repr__(handle)


def _stack(frame, depth: int = 14) -> str:
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}"
                       for f in reversed(traceback.extract_stack(frame)[-depth:]))


class _Sampler(threading.Thread):
    """The loop thread's stack every 2 ms while a step has run over 5 ms; every thread's when late."""

    def __init__(self, on_late) -> None:
        super().__init__(name="loopwatch", daemon=True)
        self.current: tuple[int, float] | None = None  # (step number, perf_counter at its start)
        self.loop_tid: int | None = None
        self.samples: dict[int, collections.Counter] = {}
        self.on_late = on_late

    def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            time.sleep(0.002)
            late = time.perf_counter() - t0 - 0.002
            if late > 0.02:  # the GIL (or a CPU) was not ours for that long: where was everybody?
                names = {t.ident: t.name for t in threading.enumerate()}
                me = threading.get_ident()
                self.on_late(late, {names.get(tid, str(tid)): _stack(fr, 6)
                                    for tid, fr in sys._current_frames().items() if tid != me})
            cur, tid = self.current, self.loop_tid
            if cur is None or tid is None or time.perf_counter() - cur[1] < 0.005:
                continue
            frame = sys._current_frames().get(tid)
            if frame is None or self.current is not cur:
                continue
            self.samples.setdefault(cur[0], collections.Counter())[_stack(frame)] += 1


def install(out_path: str | None = None, *, cpu_ms: float | None = None, wall_ms: float | None = None,
            slow_callback_s: float | None = None, sample: bool | None = None) -> None:
    """Wrap ``Handle._run`` (once per process) and make new event loops debug loops with a short slow-callback limit."""
    if _state:
        return
    env = os.environ
    out_path = out_path or env.get("CALLBOT_LOOPWATCH_OUT")
    cpu_limit = (cpu_ms if cpu_ms is not None else float(env.get("CALLBOT_LOOPWATCH_MS", "10"))) / 1000
    wall_limit = (wall_ms if wall_ms is not None else float(env.get("CALLBOT_LOOPWATCH_WALL_MS", "20"))) / 1000
    slow = slow_callback_s if slow_callback_s is not None else float(env.get("CALLBOT_LOOPWATCH_SLOW", "0.02"))
    if sample is None:
        sample = env.get("CALLBOT_LOOPWATCH_SAMPLE") == "1"
    out = open(out_path, "a", buffering=1) if out_path else sys.stderr  # noqa: SIM115 - open for the process
    lock = threading.Lock()
    perf, thread_time = time.perf_counter, time.thread_time

    def write(row: dict) -> None:
        with lock:
            out.write(json.dumps(row) + "\n")

    sampler = None
    if sample:
        sampler = _Sampler(lambda late, where: write({"time": time.time(), "sampler_late_ms": round(late * 1000, 1),
                                                      "threads": where}))
        sampler.start()

    stats = {"steps": 0, "cpu_s": 0.0, "max_cpu_ms": 0.0, "max_cpu_handle": "", "max_wall_ms": 0.0}
    _state.update(out=out, stats=stats)

    # cyclic GC: the collector runs in whichever thread allocates, holding the GIL
    loop_tids: set[int] = set()
    gc_in_step = [0.0, -1]  # by the loop thread during the current step: seconds, highest generation
    gc_t0: dict[int, float] = {}

    def _on_gc(phase: str, info: dict) -> None:
        tid = threading.get_ident()
        if phase == "start":
            gc_t0[tid] = perf()
            return
        took = perf() - gc_t0.pop(tid, perf())
        if tid in loop_tids:
            gc_in_step[0] += took
            gc_in_step[1] = max(gc_in_step[1], info.get("generation", -1))
        elif took >= 0.005:
            write({"time": time.time(), "gc_elsewhere_ms": round(took * 1000, 1),
                   "thread": threading.current_thread().name, "generation": info.get("generation")})

    gc.callbacks.append(_on_gc)

    sched_fds: dict[int, int] = {}

    def _runq_ns(tid: int) -> int:
        """Nanoseconds this thread has waited on a run queue (ready to run, no CPU free)."""
        fd = sched_fds.get(tid)
        if fd is None:
            try:
                fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            except OSError:  # not Linux: no run-queue figure
                fd = -1
            sched_fds[tid] = fd
        return int(os.pread(fd, 64, 0).split()[1]) if fd >= 0 else 0

    original = events.Handle._run
    counter = iter(range(1, 1 << 62))

    def _run(self: events.Handle) -> None:
        w0 = perf()  # first and last: the wall time is as close as can be to what asyncio's debug mode logs
        tid = threading.get_ident()
        q0, c0 = _runq_ns(tid), thread_time()
        step = next(counter)
        loop_tids.add(tid)
        gc_in_step[0], gc_in_step[1] = 0.0, -1
        if sampler is not None:
            sampler.loop_tid = tid
            sampler.current = (step, w0)
        try:
            original(self)
        finally:
            cpu = thread_time() - c0
            runq = (_runq_ns(tid) - q0) / 1e9
            wall = perf() - w0
            if sampler is not None:
                sampler.current = None
            stats["steps"] += 1
            stats["cpu_s"] += cpu
            if cpu * 1000 > stats["max_cpu_ms"]:
                stats["max_cpu_ms"] = cpu * 1000
                stats["max_cpu_handle"] = _handle_repr(self)[:200]
            stats["max_wall_ms"] = max(stats["max_wall_ms"], wall * 1000)
            samples = sampler.samples.pop(step, None) if sampler is not None else None
            if cpu >= cpu_limit or wall >= wall_limit:
                row = {"time": time.time(), "wall_ms": round(wall * 1000, 1), "cpu_ms": round(cpu * 1000, 1),
                       "runq_ms": round(runq * 1000, 1), "gil_ms": round(max(0.0, wall - cpu - runq) * 1000, 1),
                       "handle": _handle_repr(self)[:400]}
                if gc_in_step[1] >= 0:
                    row["gc_ms"], row["gc_generation"] = round(gc_in_step[0] * 1000, 1), gc_in_step[1]
                if samples:
                    row["stacks"] = samples.most_common(6)
                write(row)

    events.Handle._run = _run

    def _stats() -> None:  # SIGUSR2
        write({"time": time.time(), "stats": {k: round(v, 3) if isinstance(v, float) else v
                                              for k, v in stats.items()}})
        stats.update(steps=0, cpu_s=0.0, max_cpu_ms=0.0, max_cpu_handle="", max_wall_ms=0.0)

    def _collect() -> None:  # SIGUSR1: a full collection now, on the loop, as the allocations of calls trigger it
        w0, c0 = perf(), thread_time()
        found = gc.collect()
        write({"time": time.time(), "full_collect": {"cpu_ms": round((thread_time() - c0) * 1000, 1),
                                                     "wall_ms": round((perf() - w0) * 1000, 1), "collected": found}})

    class _Policy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self):  # type: ignore[override]
            loop = super().new_event_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = slow
            loop.add_signal_handler(signal.SIGUSR1, _collect)
            loop.add_signal_handler(signal.SIGUSR2, _stats)
            return loop

    asyncio.set_event_loop_policy(_Policy())
    write({"time": time.time(), "installed": {"pid": os.getpid(), "cpu_ms": cpu_limit * 1000,
                                              "wall_ms": wall_limit * 1000, "slow_callback_s": slow,
                                              "sample": bool(sample)}})


def stats() -> dict:
    """In this process: steps run since the last reset, their total CPU, the longest step (CPU and wall, ms)."""
    return dict(_state.get("stats", {}))


def read(path: str | os.PathLike, offset: int = 0) -> list[dict]:
    """The rows written to ``path`` from byte ``offset`` on."""
    with open(path, "rb") as f:
        f.seek(offset)
        return [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    install()
    from callbot.cli import main as callbot_main

    return callbot_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
