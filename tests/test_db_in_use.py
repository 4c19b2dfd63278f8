"""A database in use by a running serve, chat or bench run is not restored under it (app.db_in_use)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db_in_use import DatabaseInUse, in_use, only_user


def test_in_use_by_one_process_or_many_until_they_end(tmp_path: Path) -> None:
    database = tmp_path / "jmedllm.db"
    with in_use(database), in_use(database):  # a server and a bench run at once
        with pytest.raises(DatabaseInUse, match="in use by a running jmedllm"), only_user(database):
            pass
    with only_user(database):  # both ended
        pass


def test_a_folder_that_cannot_take_the_marker_leaves_the_work_going(tmp_path: Path) -> None:
    with in_use(tmp_path / "missing" / "jmedllm.db"):
        pass
    with only_user(tmp_path / "missing" / "jmedllm.db"):
        pass
