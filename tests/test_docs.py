"""The parameter table in docs/ is generated from the configuration and must be current."""

from pathlib import Path

import pytest

from emdsim.cli.paramdoc import parameter_markdown
from emdsim.config.load import load

ROOT = Path(__file__).resolve().parents[1]


def test_parameter_table_is_current():
    current = (ROOT / "docs" / "parameters.md").read_text()
    assert current == parameter_markdown(load([])), "run: python -m emdsim.cli.paramdoc"


def test_odd_and_readme_exist_and_link_the_parameters():
    odd = (ROOT / "docs" / "ODD.md").read_text()
    for heading in (
        "Purpose",
        "Entities, state variables",
        "Process overview and scheduling",
        "Design concepts",
        "Initialization",
        "Input data",
        "Submodels",
    ):
        assert heading in odd, heading
    assert "parameters.md" in odd
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_paramdoc_help_writes_nothing(tmp_path, monkeypatch, capsys):
    """``python -m emdsim.cli.paramdoc --help`` prints its usage instead of writing a file named --help."""
    from emdsim.cli.paramdoc import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    main([str(tmp_path / "p.md")])
    assert (tmp_path / "p.md").read_text().startswith("# emdsim parameters")
