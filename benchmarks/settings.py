"""The suite's knobs, in one place, with the defaults and the ``--quick`` scaling."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional

#: Every peer the suite knows; run when its interpreter can import it.
PEERS = ["upstream-ml-dash", "trackio", "wandb", "tensorboardX", "mlflow", "mlflow-async"]


@dataclass
class Settings:
    """What to run and how many times. ``quick()`` gives the CI smoke-test scale."""

    n: int = 100_000  # steps of the step-cost workload (3 scalars each)
    repeat: int = 5  # repetitions of each of our / baseline runs
    peer_repeat: int = 3  # repetitions of each peer run (some peers take minutes)
    threads: int = 4  # threads of the concurrent workload, n/threads steps each
    import_repeat: int = 30  # `python -c "import ml_dash"` repetitions
    quick: bool = False
    long: bool = False  # also the 10M-point RSS run
    big_points: int = 10_000_000  # points of the long RSS run (3 per step)
    outage_s: float = 30.0  # server blackholed this long (the target names 600 s)
    outage_rate: int = 10_000  # steps/s the training loop logs during the outage
    ingest_clients: int = 4
    ingest_steps: int = 250_000  # metric rows per ingest client (3 points each)
    ingest_batch: int = 10_000  # events per POST
    files_clients: int = 4  # concurrent blob uploads, then file downloads
    files_mib: int = 64  # MiB per client's blob
    files_reads: int = 4  # downloads of each file
    wire_batch: int = 10_000  # events per batch body for the bytes-on-the-wire figure
    python: str = sys.executable  # our interpreter
    peers_python: Optional[str] = None  # interpreter with the peers installed (upstream ml_dash!)
    peers: List[str] = field(default_factory=lambda: list(PEERS))
    sweep_rows: int = 100_000  # rows (3 scalars) of the concurrent-experiments workload, in all
    workloads: List[str] = field(default_factory=list)  # empty = all
    workdir: str = field(default_factory=tempfile.gettempdir)
    timeout: float = 900.0  # per child process

    def quick_scale(self) -> "Settings":
        """Small enough to finish in well under a minute; the numbers mean nothing."""
        self.quick = True
        self.n = 20_000
        self.repeat = 1
        self.peer_repeat = 1
        self.import_repeat = 5
        self.outage_s = 3.0
        self.outage_rate = 2_000
        self.ingest_steps = 20_000
        self.ingest_batch = 5_000
        self.sweep_rows = 10_000
        self.files_mib = 2
        self.files_reads = 1
        self.timeout = 120.0
        return self

    def wants(self, workload: str) -> bool:
        return not self.workloads or workload in self.workloads

    def scratch(self) -> str:
        """A fresh folder for this suite run's data (removed at the end)."""
        return tempfile.mkdtemp(prefix="mldash-bench-", dir=self.workdir if os.path.isdir(self.workdir) else None)
