"""Typed events of a training run (besides the generic Progress/Finished/Failed)."""
from __future__ import annotations

from dataclasses import dataclass, field

from balancelab.engine.core.events import Event, Progress, RunStep


@dataclass
class TrainStarted(Event):
    run_dir: str
    device: str
    classes: list[str]
    train_counts: list[int]
    effective_counts: list[float]
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    batches_per_epoch: int
    start_epoch: int = 0
    skipped: int = 0
    excluded_classes: dict[str, str] = field(default_factory=dict)  # class -> why it is not trained
    history: list[dict] = field(default_factory=list)  # the epochs trained before a resume, for the curves
    batch_size: int = 0  # images per step of this process (the ETA counts epochs in images)


@dataclass
class BatchProgress(Event):
    epoch: int  # 1-based
    batch: int  # 1-based
    batches: int
    loss: float
    images_per_second: float
    eta_seconds: float

    urgent = False  # one per batch: a throttling consumer may keep only the newest


@dataclass
class EpochEnd(Event):
    epoch: int  # 1-based
    entry: dict
    is_best: bool


@dataclass
class CheckpointSaved(Event):
    path: str
    kind: str  # "best" or "last"
    epoch: int


@dataclass
class RunResult:
    run_dir: str
    metrics: dict
    stopped: bool = False
    completed_epochs: int = 0
    extra: dict = field(default_factory=dict)


MEMBER_PHASE = "ensemble members"  # the Progress phase announcing each member


@dataclass
class MemberStep(RunStep):
    """An event of member ``index`` of an ensemble being trained (balanced bagging): the CLI
    renderer prefixes it with the member, the Train tab shows which member is training."""

    @property
    def urgent(self) -> bool:
        """Batch progress is throttled; a member's start, epoch ends and results never are."""
        inner = self.event
        if isinstance(inner, BatchProgress):
            return False
        return (inner.urgent or inner.phase == MEMBER_PHASE) if isinstance(inner, Progress) else True
