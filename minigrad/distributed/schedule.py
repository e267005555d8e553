"""Pipeline schedules as data: what each stage computes and communicates, in order.

A schedule is first a list of actions per stage, ``Action("F", i)`` (forward of micro-batch i)
and ``Action("B", i)`` (its backward):

* GPipe: every forward, then every backward. Holds all m micro-batches' activations.
* 1F1B (Megatron-LM, PipeDream-Flush): stage s runs min(p - s - 1, m) forwards to fill the
  pipeline, then alternates one forward and one backward, then drains the backwards. Holds at
  most p - s micro-batches' activations.

:func:`pipeline_steps` turns the actions into *steps*: before each computation a stage posts,
together, the sends of what its previous computation produced and the receives its next one
needs, and waits for all of them (MPI Isend/Irecv + Waitall, one NCCL group). :func:`validate`
checks a schedule before anything runs (every send has its receive, no stage talks to itself,
the in-flight bound) and :func:`simulate` runs it on a clock under the strictest transport, where
a send completes only once its receive is posted: a schedule that finishes there cannot
deadlock on a real one, and its timeline gives the bubble. :func:`draw_timeline` plots it.
"""
from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple


class Action(NamedTuple):
    kind: str           # "F" (forward) or "B" (backward)
    microbatch: int

    def __repr__(self):
        return f"{self.kind}{self.microbatch}"


class Transfer(NamedTuple):
    op: str             # "send" or "recv"
    what: str           # "act" (an activation, forward) or "grad" (its gradient, backward)
    microbatch: int
    peer: int           # the other stage's index

    def __repr__(self):
        return f"{self.op} {self.what}{self.microbatch} {'to' if self.op == 'send' else 'from'} {self.peer}"


class Step(NamedTuple):
    transfers: tuple    # Transfers posted together and waited for together, before `action`
    action: Action | None   # None in a stage's last step: its final sends only


class ScheduleError(RuntimeError):
    """A schedule that would hang, lose a message or break its memory bound."""


def gpipe_actions(num_stages: int, n_microbatches: int) -> list:
    """Each stage's actions: all forwards, then all backwards."""
    _check_sizes(num_stages, n_microbatches)
    one = [Action("F", i) for i in range(n_microbatches)] + [Action("B", i) for i in range(n_microbatches)]
    return [list(one) for _ in range(num_stages)]


def one_f_one_b_actions(num_stages: int, n_microbatches: int) -> list:
    """Each stage's actions: warm-up forwards, then one forward / one backward, then the rest."""
    _check_sizes(num_stages, n_microbatches)
    m, out = n_microbatches, []
    for s in range(num_stages):
        warmup = min(num_stages - s - 1, m)
        acts = [Action("F", i) for i in range(warmup)]
        for i in range(m - warmup):
            acts += [Action("F", warmup + i), Action("B", i)]
        acts += [Action("B", i) for i in range(m - warmup, m)]
        out.append(acts)
    return out


SCHEDULES = {"gpipe": gpipe_actions, "1f1b": one_f_one_b_actions}


def _check_sizes(num_stages, n_microbatches):
    for name, n in (("num_stages", num_stages), ("n_microbatches", n_microbatches)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")


def _transfers(action, stage, num_stages):
    """(receives before, sends after) of one action on one stage."""
    i = action.microbatch
    if action.kind == "F":
        before = [Transfer("recv", "act", i, stage - 1)] if stage > 0 else []
        after = [Transfer("send", "act", i, stage + 1)] if stage < num_stages - 1 else []
    else:
        before = [Transfer("recv", "grad", i, stage + 1)] if stage < num_stages - 1 else []
        after = [Transfer("send", "grad", i, stage - 1)] if stage > 0 else []
    return before, after


def pipeline_steps(actions: list) -> list:
    """Per stage, its Steps: each action's receives are posted together with the previous
    action's sends; a last step carries the final sends."""
    p, out = len(actions), []
    for s, acts in enumerate(actions):
        steps, pending = [], []
        for a in acts:
            before, after = _transfers(a, s, p)
            steps.append(Step(tuple(pending + before), a))
            pending = after
        if pending:
            steps.append(Step(tuple(pending), None))
        out.append(steps)
    return out


def validate(steps: list, n_microbatches: int, max_in_flight: int | None = None):
    """Raise ScheduleError unless the per-stage ``steps`` are a complete, deadlock-free schedule:
    each stage runs F then B of every micro-batch exactly once; every send has exactly one
    matching receive and no stage addresses itself; at most ``max_in_flight`` micro-batches are
    between their forward and backward on any stage; and the simulation finishes."""
    p = len(steps)
    sends, recvs = {}, {}
    for s, stage_steps in enumerate(steps):
        seen, in_flight, peak = {}, 0, 0
        for step in stage_steps:
            for t in step.transfers:
                if t.peer == s or not 0 <= t.peer < p:
                    raise ScheduleError(f"stage {s}: {t!r} addresses {'itself' if t.peer == s else 'no stage'}")
                key = (s, t.peer, t.what, t.microbatch) if t.op == "send" else (t.peer, s, t.what, t.microbatch)
                book = sends if t.op == "send" else recvs
                book[key] = book.get(key, 0) + 1
            a = step.action
            if a is None:
                continue
            if a in seen:
                raise ScheduleError(f"stage {s} runs {a!r} twice")
            if a.kind == "B" and Action("F", a.microbatch) not in seen:
                raise ScheduleError(f"stage {s} runs {a!r} before its forward")
            seen[a] = True
            in_flight += 1 if a.kind == "F" else -1
            peak = max(peak, in_flight)
        expected = {Action(k, i) for k in "FB" for i in range(n_microbatches)}
        if set(seen) != expected:
            raise ScheduleError(f"stage {s} does not run every forward and backward once: missing "
                                f"{sorted(expected - set(seen))}, unexpected {sorted(set(seen) - expected)}")
        if max_in_flight is not None and peak > max_in_flight:
            raise ScheduleError(f"stage {s} holds {peak} micro-batches in flight, more than {max_in_flight}")
    for key in sorted(set(sends) | set(recvs)):       # the first broken transfer, the same every run
        if sends.get(key, 0) != 1 or recvs.get(key, 0) != 1:
            src, dst, what, i = key
            raise ScheduleError(f"{what}{i} from stage {src} to stage {dst}: {sends.get(key, 0)} send(s) "
                                f"and {recvs.get(key, 0)} receive(s); every send needs exactly one receive")
    simulate(steps)


def simulate(steps: list, forward_time=1, backward_time=1) -> list:
    """Run the schedule on a clock: each step's transfers complete once both ends have posted
    theirs (a send waits for its receive), then its action takes forward_time or backward_time.
    Returns per stage the list of (action, start, end); raises ScheduleError on a deadlock."""
    p = len(steps)
    posted = {}                     # (sender, receiver, what, i, op) -> time posted
    nxt, clock = [0] * p, [0] * p   # each stage's next step and the time it posts it
    timeline = [[] for _ in range(p)]
    for s in range(p):
        _post(steps, s, 0, 0, posted)
    remaining = sum(len(st) for st in steps)
    while remaining:
        progressed = False
        for s in range(p):
            while nxt[s] < len(steps[s]):
                step = steps[s][nxt[s]]
                times = [clock[s]]
                for t in step.transfers:
                    other = posted.get(_key(s, t, mine=False))
                    if other is None:
                        break
                    times.append(other)
                else:
                    start = max(times)
                    a = step.action
                    end = start if a is None else start + (forward_time if a.kind == "F" else backward_time)
                    if a is not None:
                        timeline[s].append((a, start, end))
                    nxt[s] += 1
                    clock[s] = end
                    remaining -= 1
                    progressed = True
                    _post(steps, s, nxt[s], end, posted)
                    continue
                break
        if not progressed:
            waits = "; ".join(f"stage {s} at step {nxt[s]} waits for "
                              f"{[t for t in steps[s][nxt[s]].transfers if _key(s, t, False) not in posted]}"
                              for s in range(p) if nxt[s] < len(steps[s]))
            raise ScheduleError(f"the schedule deadlocks: {waits}")
    return timeline


def _key(stage, t, mine):
    """The posting record of transfer t of `stage` (mine=True) or of its counterpart at the peer."""
    src, dst = (stage, t.peer) if t.op == "send" else (t.peer, stage)
    op = t.op if mine else ("recv" if t.op == "send" else "send")
    return (src, dst, t.what, t.microbatch, op)


def _post(steps, s, k, time, posted):
    if k < len(steps[s]):
        for t in steps[s][k].transfers:
            posted[_key(s, t, mine=True)] = time


def bubble_fraction(timeline: list) -> Fraction:
    """The idle share of the pipeline's stage-time: 1 - busy / (stages x makespan).
    (p - 1) / (m + p - 1) for GPipe and 1F1B."""
    makespan = max(end for stage in timeline for _, _, end in stage)
    busy = sum(Fraction(end) - Fraction(start) for stage in timeline for _, start, end in stage)
    return 1 - busy / (len(timeline) * Fraction(makespan))


def peak_in_flight(actions: list) -> list:
    """Per stage, the most micro-batches between forward and backward at once."""
    out = []
    for acts in actions:
        n = peak = 0
        for a in acts:
            n += 1 if a.kind == "F" else -1
            peak = max(peak, n)
        out.append(peak)
    return out


def draw_timeline(timeline: list, path: str, title: str = ""):
    """A Gantt chart of the timeline (stages top to bottom), saved as a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    p = len(timeline)
    makespan = max(end for stage in timeline for _, _, end in stage)
    fig, ax = plt.subplots(figsize=(min(2 + makespan * 0.35, 16), 0.5 + 0.45 * p))
    for s, stage in enumerate(timeline):
        for a, start, end in stage:
            color = "#4c78a8" if a.kind == "F" else "#f58518"
            ax.broken_barh([(start, end - start)], (s - 0.4, 0.8), facecolors=color, edgecolor="white")
            ax.text((start + end) / 2, s, f"{a.kind}{a.microbatch}", ha="center", va="center",
                    fontsize=7, color="white")
    ax.set_yticks(range(p), [f"stage {s}" for s in range(p)])
    ax.invert_yaxis()
    ax.set_xlim(0, makespan)
    ax.set_xlabel("time (units: one forward)")
    bubble = bubble_fraction(timeline)
    ax.set_title(f"{title} (bubble {float(bubble):.2f})" if title else f"bubble {float(bubble):.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
