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
from offrl.report.results import NORMALIZED

REPS = 200  # bootstrap replicates: enough for the tests, quick


def write_run(path: Path, algorithm: str, dataset: str | None, seed: int, final: float, best: float | None = None,
              status: str = "finished", normalized: bool = True, algorithm_config: dict | None = None,
              evals: list[tuple[int, float]] | None = None, steps: int = 1000, argument: str | None = None,
              logged: list[int] = (), diverged_at: int | None = None, summary_extra: dict | None = None) -> None:
    """A run directory as offrl/train/offline.py writes it: config.json, metrics.jsonl (the steps in
    `logged`), eval.jsonl, summary.json. A run that did not finish gets only the evaluations passed
    in `evals`; a diverged one (status "diverged") the divergence record of offrl/train/divergence.py."""
    path.mkdir(parents=True)
    config = {"algorithm": algorithm, "algorithm_config": algorithm_config or {"hidden_dims": [32, 32]},
              "train": {"seed": seed, "steps": steps}, "env_id": "Pendulum-v1",
              "dataset": {"name": dataset, "argument": argument}, "dataset_metadata": {"name": dataset}}
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps({"step": step, "loss": 1.0}) + "\n" for step in logged))
    best = final if best is None else best
    if status == "finished":
        evals = evals or [(steps // 2, best), (steps, final)]
    records = []
    for step, score in evals or ():
        record = {"step": step, "return_mean": score * 10 - 100}
        if normalized:
            record["normalized_score"] = score
        records.append(record)
    (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status != "finished":
        summary = {"status": status}
        if status == "diverged":
            summary["divergence"] = {"step": diverged_at, "after_step": diverged_at - 100, "quantity": "metric 'q_mean'"}
        (path / "summary.json").write_text(json.dumps(summary))
        return
    summary = {"status": "finished", "final_step": steps, "best_step": steps // 2, "steps": steps,
               "final_return": final * 10 - 100, "best_return": best * 10 - 100, "updates_per_second": 500.0,
               "final_normalized_score": final if normalized else None,
               "best_normalized_score": best if normalized else None, **(summary_extra or {})}
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
                # the crashed (seed 9) and running (seed 8) runs are not counted, but not dropped silently either
                count = {("td3bc", "hopper-medium"): "4 of 5; seed 9 missing",
                         ("iql", "hopper-medium"): "4 of 5; seed 8 missing"}.get((algorithm, row[0]), "4 of 4")
                assert cell == f"{values.mean():.1f} ± {values.std(ddof=1):.1f} ({count})"

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
    failed = "not finished: status 'failed', before its first logged step; no evaluation yet"
    running = "not finished: status 'running' (killed, or still training), before its first logged step; no evaluation yet"
    assert {(s.path.name, s.reason) for s in results.skipped} == {
        ("td3bc-hopper-medium-crashed", failed), ("iql-running", running),
        ("iql-finetune", "a 'finetune' run, not an offline training run")}
    assert [(s.label, s.dataset, s.seed) for s in results.missing_seeds] == [("iql", "hopper-medium", 8),
                                                                              ("td3bc", "hopper-medium", 9)]
    assert results.expected("td3bc", "hopper-medium") == 5 and len(results.cell("td3bc", "hopper-medium")) == 4
    write_report(results_dir, out=tmp_path / "out", formats="md", reps=REPS)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "- 2 seeds are missing and not counted (listed below with the reason)." in text
    assert f"| hopper-medium | td3bc | 9 | td3bc-hopper-medium-crashed | {failed} |" in text
    assert f"| hopper-medium | iql | 8 | nested/deeper/iql-running | {running} |" in text
    assert "| iql-finetune | a 'finetune' run, not an offline training run |" in text  # belongs to no cell
    assert not (tmp_path / "out" / "report.html").exists()  # --format md only


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.references: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action"):
                self.references.append((tag, name, value or ""))


def test_safe_runs_get_dsrl_reward_and_cost_cells_marked_safe_or_unsafe(results_dir, tmp_path):
    write_report(results_dir, formats="md", reps=REPS)
    assert "Reward and cost (safe RL)" not in (results_dir / "report.md").read_text()  # no costs, no table

    root = tmp_path / "safe"
    numbers = {"bc_all": ([3.22, 3.96, 3.92], [1.01, 1.00, 1.01]), "bc_safe": ([0.36, 0.62, 0.70], [0.82, 0.76, 0.52])}
    for algorithm, (costs, rewards) in numbers.items():
        for seed, (cost, reward) in enumerate(zip(costs, rewards)):
            write_run(root / algorithm / f"seed_{seed}", algorithm, "pendulum-torque-cost", seed, 50.0, summary_extra={
                "target_cost": 5.0, "final_cost": cost * 5, "final_normalized_cost": cost, "final_normalized_reward": reward})
    write_report(root, formats="md", reps=REPS)
    header, row = markdown_table((root / "report.md").read_text(), "Reward and cost (safe RL)")
    cells = dict(zip(header, row))
    assert cells["bc_all"] == (f"reward 1.01 ± {np.std([1.01, 1.00, 1.01], ddof=1):.2f}, "
                               f"cost 3.70 ± {np.std([3.22, 3.96, 3.92], ddof=1):.2f}: unsafe (κ 5; 3 seeds)")
    assert cells["bc_safe"].startswith("reward 0.70 ± ") and ": safe (κ 5; 3 seeds)" in cells["bc_safe"]


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
    assert rows[0][:2] == ["my-data.npz (return)", f"{returns.mean():.1f} ± {returns.std(ddof=1):.1f} (3 of 3)"]
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


# -------------------------------------------------------------------- every seed counted
DIVERGED_FINAL = "39.7 ± 4.5 (3 of 4; seed 2 diverged at step 500, counted at its last evaluation (step 400); seed 3 missing)"
KILLED = "not finished: status 'running' (killed, or still training), at step 100 of 1000; no evaluation yet"


def _mixed_seeds(root: Path) -> tuple[Path, Path]:
    """td3bc: three finished seeds. iql: two finished, seed 2 diverged by step 500 after evaluations at
    steps 200 (30.0) and 400 (35.0), seed 3 killed at step 100 before its first evaluation."""
    finished = _seeds(root / "td3bc", "td3bc", [60.0, 62.0, 64.0])
    mixed = _seeds(root / "iql", "iql", [40.0, 44.0])
    write_run(mixed / "seed_2", "iql", "hopper-medium", 2, 0.0, status="diverged", evals=[(200, 30.0), (400, 35.0)],
              logged=[100, 200, 300, 400], diverged_at=500)
    write_run(mixed / "seed_3", "iql", "hopper-medium", 3, 0.0, status="running", logged=[100])
    return finished, mixed


def test_tables_count_every_seed_diverged_ones_labelled_missing_ones_named(tmp_path):
    root = tmp_path / "results"
    _mixed_seeds(root)
    results = collect_runs(root)
    (diverged,) = results.diverged
    assert (diverged.seed, diverged.diverged_at, diverged.final_step, diverged.score(NORMALIZED)) == (2, 500, 400, 35.0)
    assert [(s.seed, s.reason) for s in results.missing("iql", "hopper-medium")] == [(3, KILLED)]
    np.testing.assert_array_equal(results.scores("iql", "hopper-medium"), [40.0, 44.0, 35.0])

    write_report(root, formats="md,html", reps=REPS)
    text = (root / "report.md").read_text()
    header, *rows = markdown_table(text, "Final score")
    assert header == ["dataset", "iql", "td3bc"]
    assert rows == [["hopper-medium", DIVERGED_FINAL, "62.0 ± 2.0 (3 of 3)"]]
    header, *rows = markdown_table(text, "Best score (optimistic)")
    assert rows[0][1] == ("39.7 ± 4.5 (3 of 4; seed 2 diverged at step 500, counted with its evaluations up to "
                          "step 400; seed 3 missing)")
    header, *rows = markdown_table(text, "What was found")
    assert [row[:4] for row in rows] == [["hopper-medium", "iql", "3 of 4", "0, 1, 2"],
                                         ["hopper-medium", "td3bc", "3 of 3", "0, 1, 2"]]
    assert "| hopper-medium | iql | 2 | 500 | 400 | iql/seed_2 |" in text  # the diverged seeds' table
    assert f"| hopper-medium | iql | 3 | iql/seed_3 | {KILLED} |" in text  # the missing seeds' table
    header, *rows = markdown_table(text, "Aggregate over tasks")
    assert [row[:3] for row in rows] == [["iql", "1", "3"], ["td3bc", "1", "3"]]
    page = (root / "report.html").read_text()
    assert "<h3>Missing seeds</h3>" in page and "(3 of 4; seed 2 diverged at step 500" in page


def test_compare_names_diverged_and_missing_seeds(tmp_path, capsys):
    a, b = _mixed_seeds(tmp_path)
    assert main(["compare", str(a), str(b), "--bootstrap", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [f"A: {a}  (td3bc, 3 of 3 seeds counted)",
                         f"B: {b}  (iql, 3 of 4 seeds counted, 1 diverged (counted at its last valid evaluation), "
                         "1 missing (not counted))"]
    assert lines[3:7] == [
        "hopper-medium: final normalised score per seed",
        "  A  mean 62.0 ± 2.0 (3 of 3)   seed 0: 60.0, seed 1: 62.0, seed 2: 64.0",
        f"  B  mean {DIVERGED_FINAL}   seed 0: 40.0, seed 1: 44.0, "
        "seed 2: 35.0 (diverged at step 500; its last evaluation, step 400)",
        f"     B missing seed 3 ({b / 'seed_3'}): {KILLED}",
    ]
    assert f"difference of means A − B: {62.0 - np.mean([40.0, 44.0, 35.0]):.1f}" in "\n".join(lines)


def test_reasons_for_seeds_that_do_not_count(tmp_path):
    root = tmp_path / "group"
    write_run(root / "seed_0", "bc", "pen", 0, 50.0)
    write_run(root / "seed_1", "bc", "pen", 1, 0.0, status="diverged", logged=[100, 200], diverged_at=300)
    write_run(root / "seed_2", "bc", "pen", 2, 0.0, status="interrupted", logged=[100, 200, 300], evals=[(200, 20.0)])
    (root / "seed_3").mkdir()  # created, never written
    write_run(root / "seed_4", "bc", "pen", 4, 0.0, status="failed", logged=[100])
    summary = root / "seed_4" / "summary.json"
    summary.write_text(json.dumps({"status": "failed", "error": "ValueError: boom\nTraceback ..."}))
    (root / "seed_5").mkdir()
    (root / "seed_5" / "config.json").write_text("{not json")
    results = collect_runs(root)
    assert [s.reason for s in results.missing("bc", "pen")] == [
        "diverged at step 300 before any evaluation",
        "not finished: status 'interrupted', at step 300 of 1000; last evaluation at step 200 (not counted)",
        "an empty seed directory: the seed never started",
        "not finished: status 'failed' (ValueError: boom), at step 100 of 1000; no evaluation yet",
        "config.json is not valid JSON (Expecting property name enclosed in double quotes)",
    ]
    assert results.count_text("bc", "pen") == "1 of 6; seeds 1, 2, 3, 4, 5 missing"


def _sweep_entry(trial_id: str, alpha: float, status: str) -> dict:
    definition = {"id": trial_id, "algorithm": "td3bc", "dataset": "d4rl/hopper-medium-v2",
                  "dataset_label": "hopper-medium-v2", "hyperparameters": {"alpha": alpha},
                  "algorithm_config": {"alpha": alpha}, "train": {"steps": 1000}, "seeds": [0, 1, 2]}
    return {"algorithm": "td3bc", "dataset": definition["dataset"], "hyperparameters": definition["hyperparameters"],
            "seeds": [0, 1, 2], "run_dir": f"trials/{trial_id}", "status": status, "definition": definition}


def test_a_sweeps_seeds_count_in_n_even_before_they_start(tmp_path):
    """N comes from sweep.json: a trial not started yet shows as 0 of 3; an attempt the sweep moved
    aside (trials/<id>/stale/) is not counted twice."""
    sweep = tmp_path / "sweep"
    started, pending = _sweep_entry("td3bc-a", 2.5, "interrupted"), _sweep_entry("td3bc-b", 10.0, "pending")
    (sweep / "trials" / "td3bc-a").mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"trials": {"td3bc-a": started, "td3bc-b": pending}}))
    (sweep / "trials" / "td3bc-a" / "trial.json").write_text(json.dumps(
        {"trial": started["definition"], "status": "interrupted"}))
    for seed, score in ((0, 60.0), (1, 62.0)):
        write_run(sweep / "trials" / "td3bc-a" / f"seed_{seed}", "td3bc", "hopper-medium", seed, score,
                  algorithm_config={"alpha": 2.5}, argument="d4rl/hopper-medium-v2")
    write_run(sweep / "trials" / "td3bc-a" / "stale" / "attempt-1" / "seed_0", "td3bc", "hopper-medium", 0, 99.0,
              algorithm_config={"alpha": 2.5}, argument="d4rl/hopper-medium-v2")
    results = collect_runs(sweep)
    assert results.labels == ["td3bc (alpha=2.5)"] and results.table_labels == ["td3bc (alpha=2.5)", "td3bc (alpha=10)"]
    assert [(s.label, s.seed, s.reason) for s in results.missing_seeds] == [
        ("td3bc (alpha=2.5)", 2, "no run directory: the trial's status is 'interrupted'"),
        *[("td3bc (alpha=10)", seed, "not started: the sweep has not run this trial yet") for seed in range(3)]]
    write_report(sweep, formats="md", reps=REPS)
    text = (sweep / "report.md").read_text()
    header, *rows = markdown_table(text, "Final score")
    assert rows == [["hopper-medium", "61.0 ± 1.4 (2 of 3; seed 2 missing)", "– (0 of 3; seeds 0, 1, 2 missing)"]]
    assert "Earlier attempts that a sweep moved aside under" in text
    # pointed at one trial, only that trial's seeds are expected
    assert collect_runs(sweep / "trials" / "td3bc-a").count_text("td3bc", "hopper-medium") == "2 of 3; seed 2 missing"


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
    assert "seed 0: 70.0, seed 1: 72.0" in out and "(6 of 6)" in out
    assert f"A: {a}  (td3bc, 6 of 6 seeds counted)" in out
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
