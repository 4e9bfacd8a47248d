"""Malformed input never crashes validation: the outcome is a clear error or a counted drop."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthscore.errors import DataContractError
from pipelines.validate import check_data_folder
from tests.conftest import VALID_FOLDER

FILES = sorted(VALID_FOLDER)
JUNK = ["", ",", ";", '"', "\n", "\t", "-1", "1e309", "NaN", "2024-02-30", "9999-12-31",
        "<script>", "=cmd()", "\x00", "é", "a1", "   ", "2024-01-01T25:00:00", "1.5"]


def _check(folder: Path) -> None:
    try:
        validation = check_data_folder(folder)
    except DataContractError as exc:
        assert str(exc).strip(), "an error must say something"
        return
    for problem in validation.all_problems:
        text = str(problem)
        assert problem.file in text and problem.reason in text


@settings(deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    file=st.sampled_from(FILES),
    position=st.integers(0, 10_000),
    junk=st.sampled_from(JUNK),
    delete=st.integers(0, 5),
)
def test_splicing_junk_into_any_file(tmp_path_factory, file, position, junk, delete):
    folder = tmp_path_factory.mktemp("fuzz")
    for name, text in VALID_FOLDER.items():
        if name == file:
            cut = position % (len(text) + 1)
            text = text[:cut] + junk + text[cut + delete:]
        (folder / name).write_text(text, encoding="utf-8")
    _check(folder)
    shutil.rmtree(folder)


@settings(deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(file=st.sampled_from(FILES), content=st.binary(max_size=200))
def test_replacing_a_file_with_random_bytes(tmp_path_factory, file, content):
    folder = tmp_path_factory.mktemp("fuzz")
    for name, text in VALID_FOLDER.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / file).write_bytes(content)
    _check(folder)
    shutil.rmtree(folder)


@pytest.mark.parametrize("file", FILES)
def test_header_only_optional_or_required(data_folder, file):
    header = VALID_FOLDER[file].splitlines()[0] + "\n"
    _check(data_folder(**{file.removesuffix(".csv"): header}))
