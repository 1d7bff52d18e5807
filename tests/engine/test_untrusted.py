"""The one reader of files read back (run files, journals, cache indexes, out-of-fold indexes):
links, FIFOs, huge files and every kind of damaged JSON end in one line, never a hang or a
traceback, and every caller goes through it."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from balancelab.engine.core.untrusted import UntrustedFileError, read_json, read_regular
from balancelab.engine.data.journal_store import JournalError
from balancelab.engine.data.journal_store import load_journal
from balancelab.engine.experiments.oof_store import OofError, read_oof, write_oof
from balancelab.engine.train.run_folder import RunError, read_state
from balancelab.engine.train.run_reading import read_json as read_run_json

HUGE_NUMBER = b'{"a": 1' + b"0" * 5000 + b"}"
DEEP = b"[" * 100_000 + b"]" * 100_000
DAMAGED = {"huge number": HUGE_NUMBER, "deep": DEEP, "not utf-8": b'{"a": "\xff"}', "syntax": b'{"a": ', "empty": b""}


def one_line_without_python_advice(message: str) -> bool:
    return "\n" not in message and "sys." not in message and "Traceback" not in message


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_json_is_one_line_naming_the_file(tmp_path, name):
    path = tmp_path / "f.json"
    path.write_bytes(DAMAGED[name])
    with pytest.raises(UntrustedFileError) as info:
        read_json(str(path))
    assert str(info.value).startswith(str(path)) and "is damaged" in str(info.value)
    assert one_line_without_python_advice(str(info.value))


def test_links_fifos_folders_and_missing_files_are_refused_without_waiting(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("{}")
    os.symlink(target, tmp_path / "link.json")
    os.mkfifo(tmp_path / "fifo.json")  # opening it for reading without O_NONBLOCK would wait forever
    (tmp_path / "dir.json").mkdir()
    assert read_json(str(target)) == {}
    for name, reason in (("link.json", "symbolic link"), ("fifo.json", "not a regular file"),
                         ("dir.json", "not a regular file"), ("none.json", "does not exist")):
        with pytest.raises(UntrustedFileError, match=reason) as info:
            read_json(str(tmp_path / name))
        assert info.value.missing == (name == "none.json")


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(list(range(1000))))
    with pytest.raises(UntrustedFileError, match="implausibly large"):
        read_regular(str(path), 100)
    assert read_regular(str(path), os.path.getsize(path)) == path.read_bytes()


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_every_caller_turns_damage_into_its_own_one_line_error(tmp_path, name):
    data = DAMAGED[name]
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_bytes(data)
    with pytest.raises(RunError) as info:
        read_run_json(str(run / "metrics.json"))
    assert one_line_without_python_advice(str(info.value))

    (run / ".balancelab-run").write_bytes(data)
    assert read_state(str(run)) == "damaged"

    journal = tmp_path / "journal.json"
    journal.write_bytes(data)
    with pytest.raises(JournalError) as info:
        load_journal(str(journal))
    assert one_line_without_python_advice(str(info.value)) and "left untouched" in str(info.value)
    assert journal.read_bytes() == data

    oof = tmp_path / "oof"
    write_oof(str(oof), ["a", "b"], ["a/0.png", "b/0.png"], np.array([0, 1]), np.array([0, 1]),
              np.array([[0.9, 0.1], [0.2, 0.8]]))
    (oof / "oof_index.json").write_bytes(data)
    with pytest.raises(OofError) as info:  # a huge number was a bare ValueError here before
        read_oof(str(oof))
    assert one_line_without_python_advice(str(info.value))


def test_a_planted_marker_link_or_fifo_makes_a_damaged_run_not_a_missing_one(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert read_state(str(run)) is None
    os.mkfifo(run / ".balancelab-run")
    assert read_state(str(run)) == "damaged"
    os.unlink(run / ".balancelab-run")
    os.symlink(tmp_path / "nowhere", run / ".balancelab-run")
    assert read_state(str(run)) == "damaged"


def test_crafted_split_ensemble_and_oof_files_are_refusals_not_python_errors(tmp_path):
    """A class that is a list in split.json (TypeError: unhashable), two ensemble weights of 1e308
    (their sum overflowed and every weight became 0: uniform predictions, no warning) and an .npy
    header claiming 36 TiB (MemoryError) each ended a command with a traceback or a wrong result."""
    import json

    import numpy as np

    from balancelab.engine.train.run_reading import read_ensemble, read_split

    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps({"classes": ["a", "b"], "train": [["x.png", ["a"]]], "val": []}))
    with pytest.raises(RunError, match="unknown class"):
        read_split(str(run))

    ens = tmp_path / "ens"
    for name in ("m1", "m2"):
        (ens / "members" / name).mkdir(parents=True)
        (ens / "members" / name / "metrics.json").write_text("{}")
    (ens / "ensemble.json").write_text(json.dumps({"members": [{"path": "members/m1", "weight": 1e308},
                                                               {"path": "members/m2", "weight": 1e308}]}))
    assert [w for _, w in read_ensemble(str(ens))] == [0.5, 0.5]

    oof = tmp_path / "oof"
    write_oof(str(oof), ["a", "b"], ["x.png"], np.array([0]), np.array([0]), np.array([[0.5, 0.5]]))
    npy = next(oof.glob("*.npy"))
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (10000000, 1000000), }"
    header += " " * (118 - len(header)) + "\n"
    npy.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 16)
    with pytest.raises(OofError):
        read_oof(str(oof))
