"""DeepSpeed's pipeline schedule against Megatron's 1F1B, as event simulations of the code.

Usage (from the repository root)::

    python benchmarks/pipeline_schedules.py                 # MT-NLG 530B's pipelines (p 35; m 240, 192, 160)
    python benchmarks/pipeline_schedules.py 4 8 1 2 0.1     # stages, micro-batches, F, B, one transfer's time

Each stage runs its instruction list in order. A forward takes F, a backward (with its recompute) B, and a
transfer between neighbours starts when both have reached it and takes T on both:

* **DeepSpeed** (microsoft/DeepSpeed deepspeed/runtime/pipe/schedule.py ``TrainSchedule.steps``, as written):
  2 (m + p - 1) steps, forward or backward by the parity of step and stage; each step first exchanges with
  one neighbour as two instructions, ``SendGrad`` then ``RecvActivation`` (or ``RecvGrad`` then
  ``SendActivation``), each a blocking ``dist.send`` / ``dist.recv`` (deepspeed/runtime/pipe/p2p.py).
* **Megatron** (NVIDIA/Megatron-LM ``forward_backward_pipelining_without_interleaving``): p - s - 1 warm-up
  forwards, then 1F1B with ``send_forward_recv_backward`` / ``send_backward_recv_forward``: the send and the
  receive of one exchange are batched, one transfer time.

Printed: both makespans and the ideal (m + p - 1)(F + B). What it shows: the schedules have the same
critical path (no lock-step penalty from DeepSpeed's step parity); DeepSpeed pays each exchange's two
transfers one after the other, which is what catalogs/stacks.yaml's ``p2p_serial`` times.
"""

from __future__ import annotations

import sys


def deepspeed_program(stage: int, stages: int, m: int) -> list[tuple]:
    """One stage's instructions under TrainSchedule (compute and transfers only)."""

    def step_to_micro_batch(step: int) -> tuple[int, bool]:
        even_step, even_stage = step % 2 == 0, stage % 2 == 0
        if even_step and even_stage:
            return step // 2 - stage // 2, True
        if not even_step and not even_stage:
            return (step - 1) // 2 - stage // 2, True
        if even_step and not even_stage:
            return step // 2 - stages + (stage + 1) // 2, False
        return (step - 1) // 2 - stages + 1 + stage // 2, False

    def valid(mb: int) -> bool:
        return 0 <= mb < m

    program, prev = [], -1
    for step in range(2 * (m + stages - 1)):
        mb, forward = step_to_micro_batch(step)
        if forward and stage > 0:
            program += [("send", stage - 1)] * valid(prev) + [("recv", stage - 1)] * valid(mb)
        elif not forward and stage < stages - 1:
            program += [("recv", stage + 1)] * valid(mb) + [("send", stage + 1)] * valid(prev)
        if valid(mb):
            program.append(("F",) if forward else ("B",))
        prev = mb
    return program


def megatron_program(stage: int, stages: int, m: int) -> list[tuple]:
    """One stage's instructions under Megatron's non-interleaved 1F1B (an exchange is one batched op)."""
    first, last = stage == 0, stage == stages - 1
    warm = min(stages - stage - 1, m)
    program: list[tuple] = []
    for _ in range(warm):
        program += [("recv", stage - 1)] * (not first) + [("F",)] + [("send", stage + 1)] * (not last)
    steady = m - warm
    if steady and not first:
        program.append(("recv", stage - 1))
    for i in range(steady):
        program += [("F",)] + [("xchg", stage + 1)] * (not last) + [("B",)]
        if not first:
            program.append(("send", stage - 1) if i == steady - 1 else ("xchg", stage - 1))
    for _ in range(warm):
        program += [("recv", stage + 1)] * (not last) + [("B",)] + [("send", stage - 1)] * (not first)
    return program


def makespan(programs: list[list[tuple]], forward_s: float, backward_s: float, transfer_s: float) -> float:
    """When the last stage finishes, each transfer a rendezvous of two neighbours."""
    pc, clock = [0] * len(programs), [0.0] * len(programs)
    pairs = {("send", "recv"), ("recv", "send"), ("xchg", "xchg")}
    while any(pc[s] < len(p) for s, p in enumerate(programs)):
        moved = False
        for s, program in enumerate(programs):
            while pc[s] < len(program):
                op = program[pc[s]]
                if op[0] in ("F", "B"):
                    clock[s] += forward_s if op[0] == "F" else backward_s
                    pc[s] += 1
                    moved = True
                    continue
                peer = op[1]
                other = programs[peer][pc[peer]] if pc[peer] < len(programs[peer]) else None
                if other is None or other[0] in ("F", "B") or other[1] != s:
                    break  # the neighbour has not reached its side of this transfer yet
                if (op[0], other[0]) not in pairs:
                    raise RuntimeError(f"stage {s} {op} met stage {peer} {other}")
                clock[s] = clock[peer] = max(clock[s], clock[peer]) + transfer_s
                pc[s] += 1
                pc[peer] += 1
                moved = True
        if not moved:
            raise RuntimeError("deadlock")
    return max(clock)


def compare(stages: int, m: int, forward_s: float, backward_s: float, transfer_s: float) -> str:
    ds = makespan([deepspeed_program(s, stages, m) for s in range(stages)], forward_s, backward_s, transfer_s)
    mg = makespan([megatron_program(s, stages, m) for s in range(stages)], forward_s, backward_s, transfer_s)
    ideal = (m + stages - 1) * (forward_s + backward_s)
    return (f"p {stages:3d}  m {m:4d}  F {forward_s:g}  B {backward_s:g}  T {transfer_s:g}:  deepspeed {ds:9.1f}  "
            f"megatron {mg:9.1f}  ideal {ideal:9.1f}  deepspeed/megatron {ds / mg:.3f}")


def main(argv: list[str]) -> int:
    if argv:
        try:
            stages, m = int(argv[0]), int(argv[1])
            forward_s, backward_s, transfer_s = (float(x) for x in argv[2:5])
        except (ValueError, IndexError):
            print("usage: pipeline_schedules.py [STAGES MICRO_BATCHES F B T]", file=sys.stderr)
            return 2
        print(compare(stages, m, forward_s, backward_s, transfer_s))
        return 0
    # MT-NLG 530B (benchmarks/stack_runs.yaml smith2022-*): 35 stages, 1,920 / DP micro-batches; a full
    # recompute makes B = 3 F; T = one 84 MB activation at about 23 GB/s per GPU over HDR InfiniBand,
    # against a 3-layer stage's forward of about 53 ms (estimator's step model): T ~ 0.066 F
    for m in (240, 192, 160):
        print(compare(35, m, 1.0, 3.0, 0.0))
        print(compare(35, m, 1.0, 3.0, 0.066))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
