"""Start N local workers for the collective benchmark (``gpucost profile --comm --nproc N``).

The launcher (the ``gpucost`` process) holds a TCPStore on a free localhost port (port 0: the
system picks it, so runs never collide) and starts ``python -m profiler.comm.launch`` N times, in
their own sessions, with RANK / WORLD_SIZE / LOCAL_RANK set as torchrun would. Each worker joins the
store, runs :func:`profiler.comm.worker.run_worker`, and writes ``rank<R>.json`` (status, error, and for
rank 0 the result) to a private temporary folder. Rank 0's stderr is the launcher's (progress);
the others' goes to files, quoted when a worker fails.

- Ctrl-C on the launcher: SIGINT is forwarded to every worker; they agree on a stop at the next
  step, rank 0 writes what was measured, and :func:`launch_local` returns it (``partial: true``).
  A second Ctrl-C kills the workers.
- A worker that dies or fails ends the run: the others are stopped, and a one-line GpucostError
  names the rank and why.
- Workers notice a launcher that died (their parent changes) and stop.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from estimator.errors import GpucostError, InputError

from profiler.comm.ops import CommConfig
from profiler.comm.worker import Launch, run_worker

# A worker is started with this bootstrap: it takes SIGINT/SIGTERM (as a stop request) before it
# imports torch, so a Ctrl-C during start-up cannot kill one worker and leave the others waiting
# for it at the rendezvous.
# torch without numpy (a [profile]-only install) warns "Failed to initialize NumPy" on import: nothing
# here uses numpy, so the warning is filtered, as estimator/cli/profile_common.py does in the launcher.
_BOOTSTRAP = (
    "import signal, sys, warnings\n"
    "warnings.filterwarnings('ignore', message='Failed to initialize NumPy')\n"
    "stop = []\n"
    "for s in (signal.SIGINT, signal.SIGTERM):\n"
    "    signal.signal(s, lambda n, f: stop.append(n))\n"
    "from profiler.comm.launch import worker_main\n"
    "sys.exit(worker_main(sys.argv[1:], stopped=lambda: bool(stop)))\n"
)

STATUS_OK, STATUS_PARTIAL, STATUS_ERROR = "ok", "partial", "error"
EXIT_PARTIAL = 130
GRACE_S = 60.0  # after Ctrl-C: how long the workers get to finish the step and write their results


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line and not line.startswith(("W1", "W0", "[W", "warnings.warn"))]
    return lines[-1][:300] if lines else ""


def _read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stop(procs: list[subprocess.Popen], sig: int) -> None:
    for proc in procs:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass


def _reap(procs: list[subprocess.Popen], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` for the workers, then kill what is left (each by its own pid)."""
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _failure(procs: list[subprocess.Popen], folder: Path) -> str:
    """One line: which worker failed first and why (a dead worker before the ones it took down)."""
    died, errors = [], []
    for rank, proc in enumerate(procs):
        code = proc.poll()
        if code is None or code == 0:
            continue
        status = _read_status(folder / f"rank{rank}.json")
        if status and status.get("status") == STATUS_ERROR:
            errors.append(status.get("error") or f"rank {rank} failed")
        elif status is None:
            how = f"was killed by {_signal_name(code)}" if code < 0 else f"exited with status {code}"
            last = _last_line(folder / f"rank{rank}.err")
            died.append(f"worker rank {rank} (pid {proc.pid}) {how} before it finished"
                        + (f"; its last message: {last}" if last else ""))
    if died:
        return died[0]
    if errors:
        return errors[0]
    return "a worker of the collective benchmark failed"


def launch_local(config: CommConfig, nproc: int, *, cuda: bool) -> tuple[dict[str, Any] | None, bool]:
    """Run the benchmark on ``nproc`` local workers; return (rank 0's result, interrupted).

    ``result`` is None when the run was interrupted before anything was measured. Raises
    GpucostError (one line) when a worker fails or dies, or cannot be started.
    """
    import torch.distributed as dist

    if nproc < (1 if config.allow_one_rank else 2):
        raise InputError(f"--nproc must be at least 2 (the collectives need two ranks), got {nproc}")
    try:
        store = dist.TCPStore("127.0.0.1", 0, nproc + 1, is_master=True, wait_for_workers=False,
                              timeout=_dt.timedelta(seconds=config.timeout_s))
    except (RuntimeError, ValueError) as exc:
        raise GpucostError(f"cannot open a localhost port for the workers: {exc}") from None
    folder = Path(tempfile.mkdtemp(prefix="gpucost-comm-"))
    config_path = folder / "config.json"
    config_path.write_text(config.to_json(), encoding="utf-8")
    root = str(Path(__file__).resolve().parent.parent)
    procs: list[subprocess.Popen] = []
    err_files = []
    interrupted = False
    try:
        for rank in range(nproc):
            env = dict(os.environ)
            env.update({"RANK": str(rank), "WORLD_SIZE": str(nproc), "LOCAL_RANK": str(rank),
                        "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port),
                        "PYTHONPATH": os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)})
            if not cuda:
                env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
            if rank == 0:
                stderr: Any = None  # rank 0 shows the progress on our stderr
            else:
                stderr = open(folder / f"rank{rank}.err", "wb")
                err_files.append(stderr)
            procs.append(subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(config_path), str(folder)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True))  # Ctrl-C reaches us only; we forward it
        try:
            while True:
                codes = [p.poll() for p in procs]
                if all(c is not None for c in codes):
                    break
                if any(c not in (None, 0, EXIT_PARTIAL) for c in codes):
                    time.sleep(0.5)  # let the peers it took down report too, then name the first cause
                    message = _failure(procs, folder)
                    _stop(procs, signal.SIGTERM)
                    _reap(procs, 5.0)
                    raise GpucostError(message)
                time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted = True
            _stop(procs, signal.SIGINT)
            try:
                deadline = time.monotonic() + GRACE_S
                while procs[0].poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)  # rank 0 writes what was measured, then the others may go
                _reap(procs, 5.0)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                _reap(procs, 0.0)
                raise
        if any(p.returncode not in (0, EXIT_PARTIAL) for p in procs):
            raise GpucostError(_failure(procs, folder))
        status = _read_status(folder / "rank0.json")
        if status is None:
            raise GpucostError("worker rank 0 finished without writing its result")
        interrupted = interrupted or status["status"] == STATUS_PARTIAL
        return status.get("result"), interrupted
    finally:
        _reap(procs, 0.0 if not interrupted else 5.0)
        for handle in err_files:
            handle.close()
        shutil.rmtree(folder, ignore_errors=True)
        del store


def worker_main(argv: list[str], stopped: Any = None) -> int:
    """One local worker: ``python -m profiler.comm.launch CONFIG.json FOLDER`` (or the bootstrap
    above, which passes ``stopped``: whether a stop signal arrived before the benchmark started)."""
    import torch.distributed as dist

    config = CommConfig.from_json(Path(argv[0]).read_text(encoding="utf-8"))
    folder = Path(argv[1])
    rank = int(os.environ["RANK"])
    status_path = folder / f"rank{rank}.json"

    def write(status: dict[str, Any]) -> None:
        tmp = status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status), encoding="utf-8")
        os.replace(tmp, status_path)

    try:
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), int(os.environ["WORLD_SIZE"]),
                              is_master=False, timeout=_dt.timedelta(seconds=config.timeout_s))
        launch = Launch(rank, int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]), store=store)
        result = run_worker(config, launch, stopped=stopped)
    except GpucostError as exc:
        write({"status": STATUS_ERROR, "error": str(exc)})
        return 1
    except KeyboardInterrupt:  # before or after the benchmark's own signal handling
        write({"status": STATUS_PARTIAL, "result": None})
        return EXIT_PARTIAL
    except BaseException as exc:  # noqa: BLE001 - a worker reports every failure as one line
        if os.environ.get("GPUCOST_DEBUG"):
            traceback.print_exc()
        write({"status": STATUS_ERROR, "error": f"rank {rank}: internal error ({type(exc).__name__}: {exc})"})
        return 1
    section = (result or {}).get("collectives") if rank == 0 else None
    partial = (section is None or section["partial"]) if rank == 0 else False
    write({"status": STATUS_PARTIAL if partial else STATUS_OK, "result": result})
    return EXIT_PARTIAL if partial else 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
