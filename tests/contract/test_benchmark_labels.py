"""Every "CIS" in the texts the project ships names the benchmark with its version, exactly as the findings catalogue
defines it (shared/findings/catalogue.py, ``Finding.benchmark``): CIS renumbers between versions (v7.0.0 moved IAM
into section 2), so "CIS AWS 1.4" without a version points at a different recommendation depending on who reads it.
The HTML report and the workbook builder read the catalogue; queries, Bicep and docs must match it (checked here).

The check is proven on broken copies: an unversioned label, a version without the benchmark's name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.findings.catalogue import FINDINGS, KEY_AT_SETUP_BENCHMARK

ROOT = Path(__file__).resolve().parents[2]
REFERENCES = sorted({*(f.benchmark for f in FINDINGS if f.benchmark), KEY_AT_SETUP_BENCHMARK}, key=len, reverse=True)
# What the project ships or deploys: the app's package, its queries, infrastructure and workbook, scripts, docs.
SHIPPED = [
    *sorted((ROOT / "shared").rglob("*.py")), ROOT / "function_app.py", *sorted((ROOT / "scripts").glob("*")),
    *sorted((ROOT / "queries").glob("*.kql")), *sorted((ROOT / "docs").glob("*.md")),
    *sorted(p for p in (ROOT / "infra").rglob("*") if p.is_file()), ROOT / "azure.yaml", ROOT / "host.json",
    ROOT / "exceptions.json",
]
CIS = re.compile(r"\bCIS\b")


def unversioned(text: str) -> list[str]:
    """Each "CIS" that does not start one of the catalogue's references, with a little context."""
    return [text[max(0, m.start() - 20):m.start() + 50] for m in CIS.finditer(text)
            if not any(text.startswith(reference, m.start()) for reference in REFERENCES)]


def test_the_catalogue_names_the_benchmark_with_its_version() -> None:
    assert REFERENCES, "no finding cites a benchmark"
    for reference in REFERENCES:
        assert re.fullmatch(r"CIS AWS Foundations Benchmark v\d+\.\d+\.\d+ \d+\.\d+", reference), reference


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_cis_label_names_the_version(path: Path) -> None:
    assert not unversioned(path.read_text(encoding="utf-8")), path


def test_the_readme_names_the_version() -> None:
    assert not unversioned((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_check_catches_an_unversioned_label() -> None:
    (root_key,) = [f for f in FINDINGS if f.benchmark]
    assert not unversioned(f"Root-account access keys ({root_key.benchmark})")
    assert unversioned("Root-account access keys (CIS AWS 1.4)")  # today's old label
    assert unversioned("Root-account access keys (CIS AWS Foundations Benchmark 2.4)")  # no version
    assert unversioned("Users with two active keys (CIS 1.13)")


def test_the_report_and_the_workbook_take_the_label_from_the_catalogue() -> None:
    (root_key,) = [f for f in FINDINGS if f.benchmark]
    workbook = (ROOT / "infra" / "workbook" / "aws-iam-keys.workbook.json").read_text(encoding="utf-8")
    assert f'"title": "Root-account access keys ({root_key.benchmark})"' in workbook
    assert "ROOT_KEY.benchmark" in (ROOT / "shared" / "insight" / "report.py").read_text(encoding="utf-8")
    assert "ROOT_KEY.benchmark" in (ROOT / "scripts" / "build_workbook.py").read_text(encoding="utf-8")
