"""`offrl report` and `offrl compare` on results directories written here with known scores."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from offrl.cli import main
from offrl.errors import ConfigError
from offrl.report import collect_runs, compare_runs, write_report
from offrl.report.render import _curve_panels

REPS = 200  # bootstrap replicates: enough for the tests, quick


def write_run(path: Path, algorithm: str, dataset: str | None, seed: int, final: float, best: float | None = None,
              status: str = "finished", normalized: bool = True, algorithm_config: dict | None = None,
              evals: list[tuple[int, float]] | None = None, steps: int = 1000, argument: str | None = None) -> None:
    """A run directory as offrl/train/offline.py writes it: config.json, eval.jsonl, summary.json."""
    path.mkdir(parents=True)
    config = {"algorithm": algorithm, "algorithm_config": algorithm_config or {"hidden_dims": [32, 32]},
              "train": {"seed": seed, "steps": steps}, "env_id": "Pendulum-v1",
              "dataset": {"name": dataset, "argument": argument}, "dataset_metadata": {"name": dataset}}
    (path / "config.json").write_text(json.dumps(config))
    if status != "finished":
        (path / "summary.json").write_text(json.dumps({"status": status}))
        return
    best = final if best is None else best
    evals = evals or [(steps // 2, best), (steps, final)]
    records = []
    for step, score in evals:
        record = {"step": step, "return_mean": score * 10 - 100}
        if normalized:
            record["normalized_score"] = score
        records.append(record)
    (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"status": "finished", "final_step": steps, "best_step": steps // 2, "steps": steps,
               "final_return": final * 10 - 100, "best_return": best * 10 - 100, "updates_per_second": 500.0,
               "final_normalized_score": final if normalized else None,
               "best_normalized_score": best if normalized else None}
    (path / "summary.json").write_text(json.dumps(summary))


SCORES = {  # (algorithm, dataset) -> final scores of seeds 0..3, best = final + 5 * seed
    ("td3bc", "hopper-medium"): [52.0, 60.5, 48.25, 57.0],
    ("td3bc", "walker2d-medium"): [70.0, 75.5, 80.0, 66.0],
    ("iql", "hopper-medium"): [45.0, 41.5, 50.0, 47.75],
    ("iql", "walker2d-medium"): [71.0, 68.0, 79.5, 73.25],
}


@pytest.fixture
def results_dir(tmp_path):
    root = tmp_path / "results"
    for (algorithm, dataset), scores in SCORES.items():
        for seed, final in enumerate(scores):
            write_run(root / f"{algorithm}-{dataset}" / f"seed_{seed}", algorithm, dataset, seed, final,
                      best=final + 5 * seed)
    write_run(root / "td3bc-hopper-medium-crashed", "td3bc", "hopper-medium", 9, 0.0, status="failed")
    write_run(root / "nested" / "deeper" / "iql-running", "iql", "hopper-medium", 8, 0.0, status="running")
    return root


def markdown_table(text: str, heading: str) -> list[list[str]]:
    """The first table after `## heading`: its header, then its rows, as lists of cells."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = []
    for line in section.splitlines():
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip("|").split("|")])
        elif block:
            break
    header, _separator, *rows = block
    return [header, *rows]


def test_tables_hold_mean_and_std_over_seeds(results_dir, tmp_path):
    out = tmp_path / "out"
    written = write_report(results_dir, out=out, reps=REPS)
    assert written == [out / "report.md", out / "report.html"]
    text = (out / "report.md").read_text()
    for heading, which in (("Final score", "final"), ("Best score (optimistic)", "best")):
        header, *rows = markdown_table(text, heading)
        assert header == ["dataset", "iql", "td3bc"]
        assert [row[0] for row in rows] == ["hopper-medium", "walker2d-medium"]
        for row in rows:
            for algorithm, cell in zip(header[1:], row[1:]):
                final = np.array(SCORES[(algorithm, row[0])])
                values = final if which == "final" else final + 5 * np.arange(4)
                # the crashed and running runs are not counted: 4 seeds, not 5
                assert cell == f"{values.mean():.1f} ± {values.std(ddof=1):.1f} (4)"

    header, *rows = markdown_table(text, "Aggregate over tasks")
    for row in rows:
        pooled = np.sort(np.concatenate([SCORES[(row[0], d)] for d in ("hopper-medium", "walker2d-medium")]))
        iqm = pooled[2:6].mean()  # 8 runs: 2 cut from each end
        point, low, high = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", row[3]).groups())
        assert point == pytest.approx(iqm, abs=0.05) and low <= point <= high
        assert row[1:3] == ["2", "8"]
        assert float(row[4].split()[0]) == pytest.approx(pooled.mean(), abs=0.05)

    header, *rows = markdown_table(text, "Probability of improvement")
    assert [row[:3] for row in rows] == [["iql", "td3bc", "2"]]
    hopper = np.mean([[a > b for b in SCORES[("td3bc", "hopper-medium")]] for a in SCORES[("iql", "hopper-medium")]])
    walker = np.mean([[a > b for b in SCORES[("td3bc", "walker2d-medium")]] for a in SCORES[("iql", "walker2d-medium")]])
    assert float(rows[0][3].split()[0]) == pytest.approx((hopper + walker) / 2, abs=0.005)


def test_unfinished_runs_are_listed_as_skipped(results_dir, tmp_path):
    finetune = results_dir / "iql-finetune"
    write_run(finetune, "iql", "hopper-medium", 0, 99.0)
    config = json.loads((finetune / "config.json").read_text())
    (finetune / "config.json").write_text(json.dumps({**config, "kind": "finetune"}))
    results = collect_runs(results_dir)
    assert len(results.runs) == 16
    assert {(s.path.name, s.reason) for s in results.skipped} == {
        ("td3bc-hopper-medium-crashed", "status 'failed'"), ("iql-running", "status 'running'"),
        ("iql-finetune", "a 'finetune' run, not an offline training run")}
    write_report(results_dir, out=tmp_path / "out", formats="md", reps=REPS)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| td3bc-hopper-medium-crashed | status 'failed' |" in text
    assert "| nested/deeper/iql-running | status 'running' |" in text
    assert not (tmp_path / "out" / "report.html").exists()  # --format md only


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.references: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action"):
                self.references.append((tag, name, value or ""))


def test_html_is_self_contained_and_pngs_sit_beside_the_markdown(results_dir):
    write_report(results_dir, reps=REPS)  # default: into the results directory
    page = (results_dir / "report.html").read_text()
    links = _Links()
    links.feed(page)
    images = [value for tag, name, value in links.references if tag == "img"]
    assert len(images) == 4
    for tag, name, value in links.references:
        assert (name == "href" and value.startswith("#")) or value.startswith("data:image/png;base64,"), (tag, name)
    for image in images:
        assert base64.b64decode(image.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<link" not in page and "<script" not in page and "url(" not in page

    markdown = (results_dir / "report.md").read_text()
    for name in ("aggregate", "performance_profile", "learning_curves", "probability_of_improvement"):
        assert f"]({name}.png)" in markdown
        assert (results_dir / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_learning_curves_average_the_seeds_at_each_step(tmp_path):
    root = tmp_path / "results"
    curves = {0: [(100, 10.0), (200, 20.0)], 1: [(100, 30.0), (200, 50.0)], 2: [(100, 20.0), (200, 50.0)]}
    for seed, evals in curves.items():
        write_run(root / f"seed_{seed}", "bc", "pen", seed, evals[-1][1], evals=evals, steps=200)
    ((dataset, kind, lines),) = _curve_panels(collect_runs(root), REPS, np.random.default_rng(0))
    steps, means, low, high = lines["bc"]
    assert dataset == "pen" and kind == "normalised score"
    np.testing.assert_array_equal(steps, [100, 200])
    np.testing.assert_allclose(means, [20.0, 40.0])
    assert np.all(low <= means) and np.all(means <= high) and np.all(high - low > 0)


def test_sweep_configurations_are_labelled_not_pooled(tmp_path):
    root = tmp_path / "sweep"
    for alpha, base in ((2.5, 60.0), (10.0, 30.0)):
        for seed in range(3):
            for dataset in ("hopper-medium", "walker2d-medium"):
                write_run(root / f"alpha{alpha}" / dataset / f"seed_{seed}", "td3bc", dataset, seed, base + seed,
                          algorithm_config={"alpha": alpha, "hidden_dims": [256, 256]})
    results = collect_runs(root)
    assert results.labels == ["td3bc (alpha=2.5)", "td3bc (alpha=10)"]
    np.testing.assert_array_equal(results.scores("td3bc (alpha=10)", "hopper-medium"), [30.0, 31.0, 32.0])


def test_datasets_without_reference_scores_fall_back_to_returns(tmp_path):
    root = tmp_path / "results"
    for seed in range(3):
        # no dataset name recorded: the CLI argument names the task
        write_run(root / f"bc-{seed}", "bc", None, seed, 10.0 + seed, normalized=False, argument="my-data.npz")
        write_run(root / f"td3bc-{seed}", "td3bc", None, seed, 20.0 + seed, normalized=False, argument="my-data.npz")
    write_report(root, formats="md", reps=REPS)
    text = (root / "report.md").read_text()
    assert "'my-data.npz' is scored by return." in text
    header, *rows = markdown_table(text, "Final score")
    returns = np.array([10.0, 11.0, 12.0]) * 10 - 100
    assert rows[0][:2] == ["my-data.npz (return)", f"{returns.mean():.1f} ± {returns.std(ddof=1):.1f} (3)"]
    assert "No dataset has reference scores" in text


def test_missing_empty_and_unfinished_directories_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; expected a directory holding run directories"):
        write_report(tmp_path / "nowhere")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError, match="No run directories found under"):
        write_report(tmp_path / "empty")
    write_run(tmp_path / "crashed" / "run", "bc", "pen", 0, 0.0, status="failed")
    with pytest.raises(ConfigError, match="None of the 1 run directories .* has finished"):
        write_report(tmp_path / "crashed")
    assert not (tmp_path / "crashed" / "report.md").exists()


def test_report_cli_exit_codes(results_dir, tmp_path, capsys):
    assert main(["report", str(results_dir), "--out", str(tmp_path / "out"), "--bootstrap", "100"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "out" / "report.md"), str(tmp_path / "out" / "report.html")]
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("offrl: error: Results directory") and "Traceback" not in error
    assert main(["report", str(results_dir), "--format", "pdf"]) == 2
    assert "--format is pdf" in capsys.readouterr().err
    assert main(["report", str(results_dir), "--bootstrap", "0"]) == 2
    assert "--bootstrap is 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------ compare
def _seeds(root: Path, algorithm: str, scores, dataset: str = "hopper-medium") -> Path:
    for seed, score in enumerate(scores):
        write_run(root / f"seed_{seed}", algorithm, dataset, seed, score)
    return root


def test_compare_finds_the_better_set_of_runs(tmp_path, capsys):
    a = _seeds(tmp_path / "a", "td3bc", [70.0, 72.0, 75.0, 71.0, 74.0, 73.0])
    b = _seeds(tmp_path / "b", "iql", [50.0, 55.0, 52.0, 51.0, 54.0, 53.0])
    assert main(["compare", str(a), str(b), "--bootstrap", "500"]) == 0
    out = capsys.readouterr().out
    assert "seed 0: 70.0, seed 1: 72.0" in out and "(n=6)" in out
    assert "probability of improvement P(A > B): 1.00" in out
    assert "verdict: A is better (P(A > B) = 1.00" in out
    difference = np.mean([70, 72, 75, 71, 74, 73]) - np.mean([50, 55, 52, 51, 54, 53])
    assert f"difference of means A − B: {difference:.1f}" in out
    assert "warning" not in out

    assert main(["compare", str(b), str(a), "--bootstrap", "500"]) == 0
    assert "verdict: B is better" in capsys.readouterr().out


def test_compare_says_when_it_cannot_tell(tmp_path):
    same = [60.0, 62.0, 58.0, 61.0]
    comparison = compare_runs(_seeds(tmp_path / "a", "bc", same), _seeds(tmp_path / "b", "bc", same), reps=500)
    assert comparison.improvement.point == 0.5 and comparison.verdict.startswith("no clear difference")
    # fully separated but two seeds each: the bootstrap interval is [1, 1], the permutation test is not fooled
    few = compare_runs(_seeds(tmp_path / "c", "td3bc", [90.0, 91.0]), _seeds(tmp_path / "d", "iql", [10.0, 11.0]),
                       reps=500)
    assert few.improvement.low == 1.0 and few.p_value > 0.05
    assert few.verdict.startswith("A looks better but it is not significant")
    assert sum("fewer than 3" in warning for warning in few.warnings) == 2


def test_compare_run_directories_and_bad_pairs(tmp_path, capsys):
    a = _seeds(tmp_path / "a", "td3bc", [70.0, 72.0, 75.0])
    b = _seeds(tmp_path / "b", "iql", [50.0, 55.0, 52.0], dataset="walker2d-medium")
    assert main(["compare", str(a / "seed_0"), str(a / "seed_1")]) == 0  # single run directories
    assert "A has 1 seed on 'hopper-medium'" in capsys.readouterr().out
    assert main(["compare", str(a), str(b)]) == 2
    assert "expected at least one dataset in common" in capsys.readouterr().err
    both = tmp_path / "both"
    _seeds(both / "x", "td3bc", [1.0, 2.0, 3.0])
    _seeds(both / "y", "iql", [1.0, 2.0, 3.0])
    assert main(["compare", str(both), str(a)]) == 2
    assert "expected one configuration per side" in capsys.readouterr().err
