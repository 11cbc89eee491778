"""EXCEPTIONS_FILE is only a regular file under the app's folder, at most 1 MiB (audit finding F11: `/dev/zero` was an
uncaught MemoryError before any run record). Every refusal names the setting, and happens before any read."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.config.settings import APP_DIR, load_settings
from shared.errors import SettingsError
from shared.findings.exceptions_file import MAX_FILE_BYTES, ExceptionsFileError, load_exceptions
from tests.support.settings_env import minimal

NOW = datetime(2026, 11, 29, tzinfo=UTC)
EMPTY = json.dumps({"version": 1, "exceptions": []})


def refusal(value: str, root: Path | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(minimal(EXCEPTIONS_FILE=value), now=NOW, exceptions_root=root)
    (problem,) = info.value.problems
    assert problem.startswith(f"EXCEPTIONS_FILE {value}: ")
    return problem


def padded(size: int) -> str:
    return EMPTY + " " * (size - len(EMPTY))


def test_a_file_over_one_mib_is_refused_and_one_at_the_bound_is_read(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_text(padded(MAX_FILE_BYTES + 1))
    assert "larger than 1024 KiB" in refusal("big.json", tmp_path)
    (tmp_path / "fits.json").write_text(padded(MAX_FILE_BYTES))
    assert len(load_settings(minimal(EXCEPTIONS_FILE="fits.json"), now=NOW, exceptions_root=tmp_path).exceptions) == 0


def test_a_huge_file_is_never_read_whole(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(8 * 1024**3)  # 8 GiB, sparse: reading it whole would exhaust the memory
    assert "larger than 1024 KiB" in refusal("huge.json", tmp_path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_dev_zero_is_refused_as_outside_the_app_and_as_no_regular_file() -> None:
    assert "not under the app's folder" in refusal("/dev/zero")  # production: the app's folder only
    assert "not a regular file" in refusal("zero", Path("/dev"))  # even where the folder allowed it
    with pytest.raises(ExceptionsFileError, match="not a regular file"):
        load_exceptions("/dev/zero", now=NOW)  # `python -m shared exceptions check /dev/zero`


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.json")
    assert "not a regular file" in refusal("pipe.json", tmp_path)


def test_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folder.json").mkdir()
    assert "not a regular file" in refusal("folder.json", tmp_path)


def test_escapes_from_the_app_folder_are_refused(tmp_path: Path) -> None:
    app, outside = tmp_path / "app", tmp_path / "outside.json"
    app.mkdir()
    outside.write_text(EMPTY)
    (app / "link.json").symlink_to(outside)
    for value in ("../outside.json", str(outside), "link.json"):
        assert "not under the app's folder" in refusal(value, app)
    (app / "inside.json").write_text(EMPTY)
    (app / "sub").mkdir()
    (app / "inner-link.json").symlink_to(app / "inside.json")
    for value in ("inside.json", "sub/../inside.json", "inner-link.json", str(app / "inside.json")):
        load_settings(minimal(EXCEPTIONS_FILE=value), now=NOW, exceptions_root=app)


def test_production_reads_only_under_the_app_folder(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(EMPTY)
    assert f"not under the app's folder {APP_DIR}" in refusal(str(tmp_path / "x.json"))
    load_settings(minimal(EXCEPTIONS_FILE="exceptions.json"), now=NOW)  # the deployed one
    load_settings(minimal(EXCEPTIONS_FILE=str(APP_DIR / "tests" / "data" / "exceptions" / "valid.json"),
                          EXCEPTIONS_MAX_DAYS="730"), now=NOW)
