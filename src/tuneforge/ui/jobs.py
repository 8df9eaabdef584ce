"""Training jobs the workbench starts: ``tuneforge train`` subprocesses, their logs, stop and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Job:
    id: int
    config: Path
    run_dir: Path
    log: Path
    command: list[str]
    proc: subprocess.Popen = field(repr=False)
    started: float = field(default_factory=time.time)
    stopped: bool = False

    def state(self) -> str:
        rc = self.proc.poll()
        if rc is None:
            return "running"
        if self.stopped:
            return "stopped"
        return "finished" if rc == 0 else f"failed (exit {rc})"

    def describe(self) -> dict[str, Any]:
        tail = self.log.read_text(encoding="utf-8", errors="replace")[-3000:] if self.log.is_file() else ""
        return {"id": self.id, "config": str(self.config), "run_dir": str(self.run_dir), "state": self.state(),
                "command": shell_line(self.command), "log_tail": tail, "pid": self.proc.pid,
                "seconds": round(time.time() - self.started, 1)}


def shell_line(command: list[str]) -> str:
    """The command as a user would type it: ``python -m tuneforge`` shown as ``tuneforge``."""
    return " ".join(["tuneforge", *command[3:]] if command[1:3] == ["-m", "tuneforge"] else command)


class Jobs:
    """The jobs of this workbench process; one ``tuneforge train`` subprocess each."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}

    def start(self, config: Path, run_dir: Path, resume: bool = False) -> Job:
        for job in self.jobs.values():
            if job.run_dir == run_dir and job.state() == "running":
                raise ValueError(f"{run_dir} is already training (job {job.id})")
        command = [sys.executable, "-m", "tuneforge", "train", str(config)]
        if resume:
            command.append("train.resume=true")
        log = run_dir.parent / f"{run_dir.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "TQDM_MININTERVAL": "2"})
        job = Job(len(self.jobs) + 1, config, run_dir, log, command, proc)
        self.jobs[job.id] = job
        return job

    def stop(self, job_id: int) -> Job:
        job = self.jobs[job_id]
        if job.proc.poll() is None:
            job.stopped = True
            # SIGINT, like Ctrl-C in a terminal: the checkpoints already written let `train.resume=true` continue
            os.killpg(job.proc.pid, signal.SIGINT)
            try:
                job.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(job.proc.pid, signal.SIGKILL)
                job.proc.wait()
        return job

    def stop_all(self) -> None:
        for job_id in list(self.jobs):
            self.stop(job_id)
