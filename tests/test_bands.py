"""Published bands (CORL's D4RL gym table) beside report cells, with verdicts, on synthetic runs."""

from __future__ import annotations

import json

import pytest

from offrl.cli import main
from offrl.errors import ConfigError
from offrl.report import collect_runs, write_report
from offrl.report.bands import ABOVE, BELOW, NO_REFERENCE, REPRODUCED, band_rows, band_section, load_bands, verdict

from test_report import write_run

REPS = 100


def test_corl_table_holds_the_published_numbers():
    table = load_bands("corl-gym")
    assert "tinkoff-ai/CORL@" in table.source and "README.md" in table.source and table.seeds == 4
    assert table.entry("final", "rebrac", "hopper-medium-v2") == (102.29, 0.17)
    assert table.entry("best", "edac", "walker2d-medium-expert-v2") == (116.52, 0.75)
    assert table.entry("final", "percent_bc", "hopper-medium-replay-v2") == (70.42, 8.66)
    assert (table.budget("td3bc"), table.budget("sac_n"), table.budget("dt")) == (1_000_000, 3_000_000, 100_000)
    for which in ("final", "best"):  # ten algorithms x nine datasets, as the README shows
        assert len(table.scores[which]) == 10 and all(len(rows) == 9 for rows in table.scores[which].values())


def test_verdict_uses_two_published_std_or_the_tolerance():
    band = (60.0, 2.0)
    assert verdict(60.0, band) == REPRODUCED and verdict(55.9, band) == BELOW and verdict(64.1, band) == ABOVE
    assert verdict(56.1, band) == REPRODUCED  # inside 60 ± 4
    assert verdict(50.0, band, tolerance=10.0) == REPRODUCED and verdict(49.0, band, tolerance=10.0) == BELOW
    assert verdict(60.0, None) == NO_REFERENCE


def _cells(root, algorithm, dataset, finals, steps=1_000_000, scale=None):
    for seed, final in enumerate(finals):
        path = root / f"{algorithm}-{dataset.replace('/', '-')}" / f"seed_{seed}"
        write_run(path, algorithm, dataset, seed, final, best=final + 1, steps=steps, argument=dataset)
        if scale is not None:
            config = json.loads((path / "config.json").read_text())
            config["dataset"]["budget_scale"] = scale
            (path / "config.json").write_text(json.dumps(config))


def test_report_puts_published_numbers_and_verdicts_beside_cells(tmp_path):
    root = tmp_path / "results"
    _cells(root, "td3bc", "d4rl/hopper-medium-v2", [58.0, 61.0, 62.5])  # CORL final 60.37 ± 3.49: reproduced
    _cells(root, "iql", "d4rl/hopper-medium-v2", [40.0, 42.0, 44.0])  # 67.53 ± 3.78: below
    _cells(root, "rebrac", "d4rl/halfcheetah-medium-v2", [70.0, 71.0, 72.0])  # 64.04 ± 0.68: above
    _cells(root, "spot", "d4rl/hopper-medium-v2", [50.0, 51.0, 52.0])  # not in CORL's table
    _cells(root, "td3bc", "my-own-data", [10.0, 11.0, 12.0])  # not a D4RL name: not in the band section
    rows = {(row[0], row[1]): row for row in band_rows(collect_runs(root), load_bands(), "final")}
    assert rows[("d4rl/hopper-medium-v2", "td3bc")][2:] == ["60.5 ± 2.3 (n=3)", "60.4 ± 3.5", "[53.4, 67.3]", REPRODUCED]
    assert rows[("d4rl/hopper-medium-v2", "iql")][-1] == BELOW
    assert rows[("d4rl/halfcheetah-medium-v2", "rebrac")][-1] == ABOVE
    assert rows[("d4rl/hopper-medium-v2", "spot")][-1] == NO_REFERENCE
    assert rows[("my-own-data", "td3bc")][-1] == NO_REFERENCE
    best = {(row[0], row[1]): row for row in band_rows(collect_runs(root), load_bands(), "best")}
    assert best[("d4rl/hopper-medium-v2", "td3bc")][3] == "70.4 ± 1.2"  # the published best, not final


def test_band_section_names_the_source_and_holds_the_rows(tmp_path):
    root = tmp_path / "results"
    _cells(root, "td3bc", "d4rl/hopper-medium-v2", [58.0, 61.0, 62.5])
    blocks = band_section(collect_runs(root), load_bands())
    assert blocks[0] == ("heading", "Published results: corl-gym")
    assert "tinkoff-ai/CORL@" in blocks[1][1] and "2 std" in blocks[1][1]
    tables = [content for kind, content in blocks if kind == "table"]
    # final 60.5 within CORL's 60.37 ± 2 x 3.49; best 61.5 under CORL's best 70.44 ± 2 x 1.18
    assert [row[-1] for table in tables for row in table[1]] == [REPRODUCED, BELOW]
    assert band_section(collect_runs(root), load_bands(), tolerance=5.0)[1][1].count("max(2 std, 5)") == 1
    _cells(tmp_path / "own", "td3bc", "my-own-data", [10.0, 11.0, 12.0])
    assert band_section(collect_runs(tmp_path / "own"), load_bands()) == []  # no D4RL cell: no section


def test_reduced_budget_says_so_in_every_title_and_gives_no_verdict(tmp_path):
    root = tmp_path / "results"
    _cells(root, "td3bc", "d4rl/hopper-medium-v2", [58.0, 61.0, 62.5], steps=100_000, scale=0.1)
    rows = band_rows(collect_runs(root), load_bands(), "final")
    assert rows[0][-1] == "no verdict (100,000 of 1,000,000 updates)"
    report = (write_report(root, out=tmp_path / "out", formats="md", reps=REPS)[0]).read_text()
    titles = [line for line in report.splitlines() if line.startswith(("## ", "### ")) and "What was found" not in line]
    titles = [t for t in titles if not t.startswith("### ") or "score" in t.lower()]
    assert titles and all("reduced budget (×0.1" in title for title in titles), titles
    assert "| reproduced |" not in report and "| no verdict (100,000 of 1,000,000 updates) |" in report


def test_bad_band_table_is_one_sentence(tmp_path, capsys):
    root = tmp_path / "results"
    _cells(root, "td3bc", "d4rl/hopper-medium-v2", [58.0, 61.0, 62.5])
    broken = tmp_path / "bands.json"
    broken.write_text(json.dumps({"source": "x", "final": {"td3bc": {"hopper-medium-v2": "sixty"}}}))
    with pytest.raises(ConfigError, match="not readable"):
        load_bands(str(broken))
    code = main(["report", str(root), "--bands", "no-such-table", "--format", "md", "--bootstrap", "50"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "corl-gym" in err
