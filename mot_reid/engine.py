"""Run many independent jobs on workers that each set up their state (loaded models) once.

`run_jobs(setup, setup_args, job, items, ...)` yields `(index, result)` as jobs finish:
- engine "local": `workers` processes of a spawn pool (one worker runs in this process), each calling
  `setup(*setup_args)` once and then `job(state, item)` for every item it is handed;
- engine "ray": Ray actors doing the same; Ray places them (CPUs, `gpus_per_worker`), retries a task
  whose actor died (`max_retries`) and reports failures. Ray is imported only here, only when asked for.

`setup` and `job` must be module-level functions (they are pickled to the workers); a job should return
its own failures as data, so one bad item does not end the run. A failing `setup` (say, a missing weights
file) ends the run in the caller on every engine: a UserError as itself, anything else as a RuntimeError
carrying the worker's traceback, where a pool would otherwise restart the failing worker forever.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from mot_reid.errors import UserError

ENGINES = ("local", "ray")
INTERRUPTED = "interrupted"  # a job result equal to this means the job itself was stopped by a signal
_state = None
_busy = False  # a pool worker is inside a job


def default_workers(n_items: int) -> int:
    """One worker per GPU when there are GPUs, else one per two cores; never more than there are items."""
    try:
        import torch
        gpus = torch.cuda.device_count()
    except ImportError:  # pragma: no cover - torch is a dependency
        gpus = 0
    return max(1, min(n_items, gpus or (os.cpu_count() or 2) // 2))


@dataclass
class _SetupFailed:
    """What a worker whose setup raised answers to every job: the parent raises it once."""

    message: str
    user_error: bool

    @classmethod
    def setup(cls, setup, setup_args):
        try:
            return setup(*setup_args)
        except UserError as exc:
            return cls(str(exc), True)
        except Exception:  # noqa: BLE001 - a bug: re-raised in the parent with this traceback
            return cls(traceback.format_exc(), False)

    def raise_(self):
        raise (UserError(self.message) if self.user_error else RuntimeError(f"worker setup failed:\n{self.message}"))


def _checked(results):
    for i, result in results:
        if isinstance(result, _SetupFailed):
            result.raise_()
        yield i, result


def run_jobs(setup: Callable, setup_args: tuple, job: Callable, items: Sequence, engine: str = "local",
             workers: int = 1, gpus_per_worker: float = 0, address: str | None = None,
             max_retries: int = 1) -> Iterator[tuple[int, object]]:
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if not items:  # nothing to do: load no models
        return
    if engine == "ray":
        yield from _ray(setup, setup_args, job, items, workers, gpus_per_worker, address, max_retries)
    else:
        yield from _local(setup, setup_args, job, items, workers)


def _local(setup, setup_args, job, items, workers: int):
    if workers <= 1 or len(items) <= 1:
        state = setup(*setup_args)
        for i, item in enumerate(items):
            yield i, job(state, item)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: the parent may hold torch and OpenCV threads, which fork does not survive.
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_pool_init,
                                                     initargs=(setup, setup_args, threads))
    try:
        yield from _checked(pool.imap_unordered(_pool_job, [(job, i, item) for i, item in enumerate(items)]))
        pool.close()
        pool.join()  # let the workers exit on their own; terminate below is for an early exit
    finally:
        # On Ctrl-C/SIGTERM (or an engine error) stop the workers now; jobs they had begun leave no
        # output behind, as every output is written atomically.
        pool.terminate()
        pool.join()


def _pool_init(setup, setup_args, threads: int) -> None:
    global _state
    # The parent decides what Ctrl-C means; workers are stopped by it (terminate, i.e. SIGTERM) instead. A job
    # tracking frames turns SIGTERM into a clean stop itself; anywhere else it unwinds quietly, so an atomic
    # write that was under way removes its temp file rather than leaving it beside the outputs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)
    import torch
    torch.set_num_threads(threads)
    _state = _SetupFailed.setup(setup, setup_args)


def _exit_quietly(signum, frame):
    if _busy:
        raise SystemExit(130)  # unwinds the job: an atomic write under way removes its temp file
    os._exit(130)  # idle or already exiting: nothing to clean up, and no exception in atexit callbacks


def _pool_job(task):
    job, i, item = task
    global _busy
    if isinstance(_state, _SetupFailed):
        return i, _state
    _busy = True
    try:
        result = job(_state, item)
    finally:
        _busy = False
    if result == INTERRUPTED or (isinstance(result, dict) and result.get("status") == INTERRUPTED):
        # SIGTERM from Pool.terminate reached a job that turns it into a clean stop; the pool is going
        # away, so leave now rather than wait for work that will never come.
        os._exit(130)
    return i, result


class _Actor:
    """One Ray worker: state set up once in __init__, then any number of jobs."""

    def __init__(self, setup, setup_args):
        self.state = _SetupFailed.setup(setup, setup_args)

    def run(self, job, i, item):
        return i, self.state if isinstance(self.state, _SetupFailed) else job(self.state, item)


def _ray(setup, setup_args, job, items, workers, gpus_per_worker, address, max_retries):
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise UserError("--engine ray needs Ray: pip install 'mot-reid[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            # Workers import mot_reid as this process does (a checkout on PYTHONPATH works too).
            env = {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}} if os.environ.get("PYTHONPATH") else None
            on_sigterm = signal.getsignal(signal.SIGTERM)
            ray.init(address=address, include_dashboard=False, log_to_driver=False, runtime_env=env)
            # Ray's driver installs a crash handler that aborts on SIGTERM (exit 134, manifest left unfinished);
            # give SIGTERM back its meaning here (the caller's clean stop) when it had one.
            if on_sigterm is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, on_sigterm)
        except ConnectionError as exc:
            raise UserError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    actor = ray.remote(_Actor).options(num_cpus=1, num_gpus=gpus_per_worker, max_restarts=max_retries,
                                       max_task_retries=max_retries)
    actors = [actor.remote(setup, setup_args) for _ in range(max(1, min(workers, len(items))))]
    try:
        pool = ActorPool(actors)
        yield from _checked(pool.map_unordered(lambda a, task: a.run.remote(job, *task), list(enumerate(items))))
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
