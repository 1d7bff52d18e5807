"""The one long-work protocol: a task typed ``EventStream[T]`` yields Events and ends with exactly one
``Finished[T]`` or ``Failed`` — checked against the type each task declares, not a copied list."""
from __future__ import annotations

import ast
import types
import typing
from pathlib import Path

import pytest

from balancelab.engine.core.events import Event, EventStream, Failed, Finished, Progress, StopToken
from balancelab.engine.experiments.recipe_search import search
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train

ROOT = Path(__file__).resolve().parents[2]

# Long tasks whose modules belong to other work in progress; each owner replaces ``-> Iterator`` by
# ``-> EventStream[<result>]`` and removes the line here (the test fails on a line left behind).
NOT_YET_DECLARED: set[str] = set()


def _long_tasks() -> dict[str, str | None]:
    """Public engine functions that yield a Finished or Failed event -> their return annotation.
    A step helper (used with ``yield from``, it returns a value) is no task of its own."""
    found = {}
    for path in sorted(ROOT.glob("engine/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            if any(isinstance(n, ast.Yield) and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name)
                   and n.value.func.id in ("Finished", "Failed") for n in ast.walk(node)) and not any(
                    isinstance(n, ast.Return) and n.value is not None and not (
                        isinstance(n.value, ast.Constant) and n.value.value is None) for n in ast.walk(node)):
                found[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = (
                    ast.unparse(node.returns) if node.returns else None)
    return found


def declared_result(task) -> tuple[type, ...]:
    """The types ``Finished.result`` may have, read from the task's ``EventStream[T]`` annotation."""
    ret = typing.get_type_hints(task)["return"]
    (union,) = typing.get_args(ret)
    finished = [a for a in typing.get_args(union) if typing.get_origin(a) is Finished]
    if typing.get_origin(ret) is None or len(finished) != 1:
        raise AssertionError(f"{task.__name__} is not typed EventStream[T]: {ret}")
    (result,) = typing.get_args(finished[0])
    if typing.get_origin(result) in (typing.Union, types.UnionType):
        return tuple(type(None) if a is None else a for a in typing.get_args(result))
    return (result,)


def check_stream(task, events: list) -> Finished | Failed:
    """Exactly one terminal event, last; every event before it an Event; the result of the declared type."""
    terminal = [i for i, ev in enumerate(events) if isinstance(ev, (Finished, Failed))]
    assert terminal == [len(events) - 1], f"{task.__name__}: terminal events at {terminal} of {len(events)}"
    stray = [ev for ev in events[:-1] if not isinstance(ev, Event)]
    assert not stray, f"{task.__name__} yielded non-Event progress: {stray[:3]}"
    last = events[-1]
    if isinstance(last, Finished):
        allowed = declared_result(task)
        assert isinstance(last.result, allowed), f"{task.__name__}: {type(last.result)} is not one of {allowed}"
    return last


def test_every_long_task_in_the_engine_declares_its_result_type():
    tasks = _long_tasks()
    assert "engine/train/run.py:train" in tasks  # the scan finds the tasks at all
    undeclared = {k: v for k, v in tasks.items() if not (v or "").startswith("EventStream[")}
    assert set(undeclared) - NOT_YET_DECLARED == set(), "declare these as -> EventStream[<result type>]"
    stale = NOT_YET_DECLARED - set(undeclared)
    assert not stale, f"declared now (or gone): remove from NOT_YET_DECLARED: {sorted(stale)}"


def test_the_checker_fails_on_a_broken_stream():
    def broken(stop: StopToken | None = None) -> EventStream[int]:
        yield Progress("x", 0, 1)
        yield Finished(1)
        yield Finished(2)

    def wrong_type() -> EventStream[int]:
        yield Finished("not an int")

    def silent() -> EventStream[int]:
        yield Progress("x", 0, 1)

    for task in (broken, wrong_type, silent):
        with pytest.raises(AssertionError):
            check_stream(task, list(task()))
    assert declared_result(broken) == (int,)


def _tiny(demo_root, out, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(data=str(demo_root), out=str(out), model="tiny-2conv", epochs=1, batch_size=64,
                                 image_size=16, device="cpu"), **kw})


def test_train_ends_with_one_finished_run_result_or_failed(demo_root, tmp_path):
    done = check_stream(train, list(train(_tiny(demo_root, tmp_path / "ok"))))
    assert isinstance(done, Finished) and done.result.metrics
    stop = StopToken()
    stop.request()
    stopped = check_stream(train, list(train(_tiny(demo_root, tmp_path / "stopped"), stop)))
    assert isinstance(stopped, Finished) and stopped.stopped
    failed = check_stream(train, list(train(_tiny(tmp_path / "missing", tmp_path / "bad"))))
    assert isinstance(failed, Failed)


def test_search_ends_with_one_finished_search_result_or_failed(demo_root, tmp_path):
    stop = StopToken()
    stop.request()  # stopped during its scan: a stopped Finished(None), which the declared type allows
    stopped = check_stream(search, list(search(str(demo_root), 2.0, ["none"], stop=stop, out=str(tmp_path))))
    assert isinstance(stopped, Finished) and stopped.stopped and stopped.result is None
    assert isinstance(check_stream(search, list(search(str(tmp_path / "missing"), 3.0))), Failed)
