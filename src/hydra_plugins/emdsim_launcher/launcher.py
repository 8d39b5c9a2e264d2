"""A Hydra launcher in which a dying job process fails only its own job (command-line layer).

``hydra/launcher=joblib`` resolves to this launcher (``conf/hydra/launcher/joblib.yaml`` shadows
the plugin's config and keeps its settings): with joblib's own launcher, one worker killed by the
kernel's OOM killer or a ``kill -9`` breaks the whole loky pool, the sweep stops with a traceback,
the job running beside it is lost and no ``sweep.parquet`` is written.  Here every job runs in a
process of its own (forked from the launcher), at most ``n_jobs`` at a time; a job whose process
dies without returning is recorded as failed (``failure.json`` names the signal) and the others
carry on.  Where ``fork`` is unavailable (macOS, Windows) it falls back to joblib's launcher.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import DictConfig, open_dict

from emdsim.studies import sweep

log = logging.getLogger("emdsim")

__all__ = ["IsolatingJoblibLauncher"]


def _sweep_config(launcher: JoblibLauncher, idx: int, overrides: Sequence[str]) -> DictConfig:
    cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = f"{cfg.hydra.job.name}_{idx}"
        cfg.hydra.job.num = idx
    return cfg


def _child(launcher: JoblibLauncher, cfg: DictConfig, conn: Any) -> None:  # pragma: no cover - forked
    """Body of a job's process: run the job as Hydra's basic launcher would and send back its
    JobReturn (or the error); the process then ends without running the parent's exit handlers."""
    code = 0
    try:
        setup_globals()
        HydraConfig.instance().set_config(cfg)
        ret = run_job(
            hydra_context=launcher.hydra_context,
            config=cfg,
            task_function=launcher.task_function,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        conn.send(ret)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which decides
        code = 1
        try:
            conn.send(err)
        except Exception:  # an unpicklable error: the parent records the exit code
            pass
    finally:
        conn.close()
        os._exit(code)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code} without a result"


class IsolatingJoblibLauncher(JoblibLauncher):
    """Joblib's launcher settings, one forked process per job (see the module docstring)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if "fork" not in multiprocessing.get_all_start_methods():
            return super().launch(job_overrides, initial_job_idx)
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        n_jobs = int(self.joblib.get("n_jobs") or 1)
        if n_jobs < 0:
            n_jobs = max((os.cpu_count() or 1) + 1 + n_jobs, 1)
        log.info(
            "launching %d jobs, %d at a time, each in its own process; sweep output dir: %s",
            len(job_overrides),
            n_jobs,
            sweep_dir,
        )
        ctx = multiprocessing.get_context("fork")
        results: list[JobReturn | None] = [None] * len(job_overrides)
        pending = list(enumerate(job_overrides))
        running: dict[Any, tuple[int, Any, DictConfig]] = {}  # result pipe -> job index, process, config
        while pending or running:
            while pending and len(running) < n_jobs:
                i, overrides = pending.pop(0)
                idx = initial_job_idx + i
                cfg = _sweep_config(self, idx, overrides)
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
                parent_end, child_end = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(self, cfg, child_end), daemon=False)
                proc.start()
                child_end.close()
                running[parent_end] = (i, proc, cfg)
            # wait on the result pipes, not on the processes: a child blocks in send() until its
            # result (larger than a pipe buffer) is read, and a dead child's pipe reads as EOF
            for conn in wait(list(running)):
                i, proc, cfg = running.pop(conn)
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    message = None
                conn.close()
                proc.join()
                if isinstance(message, JobReturn):
                    results[i] = message
                    continue
                results[i] = _record_lost(
                    initial_job_idx + i, list(job_overrides[i]), cfg, _why_lost(proc.exitcode, message)
                )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [r for r in results if r is not None]


def _why_lost(exitcode: int | None, error: BaseException | None) -> str:
    """Why a job's process returned no result: the error it sent, or how it ended."""
    if error is not None:
        return f"{type(error).__name__}: {error}"
    return f"the job's process {_describe_exit(exitcode)}"


def _record_lost(idx: int, overrides: list[str], cfg: DictConfig, reason: str) -> JobReturn:
    """Record a job that returned no result as failed, in its own directory, and return a result
    that does not stop the sweep (the sweeper reads every job's result)."""
    HydraConfig.instance().set_config(cfg)
    job_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
    if not (job_dir / sweep.JOB).is_file():
        sweep.write_job(job_dir, num=idx, overrides=overrides, seed=None)
    if not (job_dir / sweep.SUMMARY).is_file():
        sweep.write_failure(job_dir, RuntimeError(reason))
    log.error("job %d (%s) failed: %s", idx, " ".join(overrides), reason)
    print(f"sweep: job {idx} failed: {reason}", flush=True)
    ret = JobReturn(overrides=overrides, cfg=cfg, hydra_cfg=cfg, working_dir=str(job_dir), task_name="emdsim")
    ret.status = JobStatus.COMPLETED
    ret.return_value = None
    return ret


class _TolerantJob:
    """A submitit job whose ``results()`` records a failure in the job's directory instead of
    raising, so the sweeper (which reads every result) does not stop the whole sweep."""

    def __init__(self, job: Any, launcher: Any, idx: int, overrides: list[str]) -> None:
        self.job, self.launcher, self.idx, self.overrides = job, launcher, idx, overrides

    def results(self) -> list[JobReturn]:
        try:
            return self.job.results()
        except Exception as err:  # noqa: BLE001 - submitit raises several types for a dead job
            cfg = _sweep_config(self.launcher, self.idx, self.overrides)
            text = str(err).strip().splitlines()
            why = text[0] if text else type(err).__name__
            return [_record_lost(self.idx, self.overrides, cfg, f"the job's process ended without a result ({why})")]


def _tolerant_launch(
    launcher: Any, parent: type, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    import submitit

    original = submitit.AutoExecutor.map_array

    def map_array(executor: Any, fn: Any, *iterables: Any) -> list[_TolerantJob]:
        jobs = original(executor, fn, *iterables)
        return [_TolerantJob(j, launcher, initial_job_idx + i, list(job_overrides[i])) for i, j in enumerate(jobs)]

    submitit.AutoExecutor.map_array = map_array
    try:
        return parent.launch(launcher, job_overrides, initial_job_idx)
    finally:
        submitit.AutoExecutor.map_array = original


try:  # the submitit launchers (optional dependency of Hydra, declared by emdsim)
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

    class IsolatingSubmititLocalLauncher(LocalLauncher):
        """submitit_local, where a job whose process dies is a failed row and the sweep goes on."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            return _tolerant_launch(self, LocalLauncher, job_overrides, initial_job_idx)

    class IsolatingSubmititSlurmLauncher(SlurmLauncher):
        """submitit_slurm, where a job that dies (OOM, time limit, node failure) is a failed row."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            return _tolerant_launch(self, SlurmLauncher, job_overrides, initial_job_idx)

    __all__ += ["IsolatingSubmititLocalLauncher", "IsolatingSubmititSlurmLauncher"]
except ImportError:  # pragma: no cover - submitit launcher not installed
    pass
