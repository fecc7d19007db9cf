"""The calcifl command line, in-process and as the installed console script."""

import json
import shutil
import subprocess
import sys

import pydicom
import pytest

from cli.main import build_parser, main


def test_help_lists_commands():
    text = build_parser().format_help()
    assert "synth" in text and "inspect" in text


def test_synth_then_inspect(tmp_path, capsys):
    out = tmp_path / "s"
    assert (
        main(["synth", "--out", str(out), "--hospitals", "2", "--exams", "3", "--seed", "1", "-q"])
        == 0
    )
    sites = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert sites == ["hospital-1", "hospital-2"]
    dcm = next((out / "hospital-2").rglob("*.dcm"))
    assert pydicom.dcmread(dcm).Modality == "MG"
    report = tmp_path / "summary.json"
    md = tmp_path / "summary.md"
    assert (
        main(["inspect", str(out / "hospital-2"), "--json", str(report), "--md", str(md), "-q"])
        == 0
    )
    summary = json.loads(report.read_text())
    assert summary["images"]["refused"] == 0 and summary["images"]["usable"] >= 8
    assert "# Data summary" in capsys.readouterr().out and md.read_text().startswith("#")


def test_inspect_bad_folder_exits_2(tmp_path):
    assert main(["inspect", str(tmp_path), "-q"]) == 2


def test_console_script_runs(tmp_path):
    # the installed entry point, in a fresh process
    exe = shutil.which("calcifl")
    assert exe, "the calcifl console script is not installed (pip install -e .)"
    result = subprocess.run(
        [exe, "inspect", str(tmp_path), "-q"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "neither" in result.stderr
    assert subprocess.run([exe, "synth", "--help"], capture_output=True).returncode == 0


def test_worker_processes_import_neither_torch_nor_flower():
    # spawned workers (the generator's) re-import the console script's module and their own
    code = (
        "import sys, cli.main, common.synth.generate;"
        "print(sorted(m for m in ('torch', 'flwr', 'opacus') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_simulate_offers_exactly_the_servers_strategies():
    from server.settings import STRATEGIES

    parser = build_parser()
    for name in STRATEGIES:
        assert parser.parse_args(["simulate", "--out", "x", "--strategy", name]).strategy == name
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--out", "x", "--strategy", "fedsgd"])
    # and nothing the server would refuse
    simulate = next(
        a
        for a in parser._subparsers._group_actions[0].choices.values()
        if a.prog.endswith(" simulate")
    )
    strategy = next(a for a in simulate._actions if "--strategy" in a.option_strings)
    assert set(strategy.choices) == set(STRATEGIES)


def test_simulate_keeps_the_study_files_min_cell_unless_told(tmp_path):
    from dataclasses import replace

    from cli.options import study_config
    from common.study.arms import StudyConfig

    study = tmp_path / "study.json"
    study.write_text(replace(StudyConfig(), min_cell=5).to_json())
    parser = build_parser()
    args = parser.parse_args(["simulate", "--out", "x", "--reader-study", "--study", str(study)])
    assert study_config(args).min_cell == 5
    args = parser.parse_args(
        ["simulate", "--out", "x", "--reader-study", "--study", str(study), "--min-cell", "8"]
    )
    assert study_config(args).min_cell == 8


def test_simulate_defaults_are_the_run_settings_defaults():
    from common.synth.generate import SynthConfig
    from server.settings import RunSettings

    args = build_parser().parse_args(["simulate", "--out", "x"])
    run, synth = RunSettings(), SynthConfig()
    assert (args.rounds, args.strategy, args.seed) == (
        run.num_server_rounds,
        run.strategy,
        run.seed,
    )
    assert (args.detector_epochs, args.classifier_epochs) == (
        run.detector_epochs,
        run.classifier_epochs,
    )
    assert (args.epsilon, args.central_dp_delta) == (run.dp_epsilon, run.central_dp_delta)
    assert (args.hospitals, args.exams) == (synth.hospitals, synth.exams)


def test_synthetic_and_data_together_are_refused(tmp_path):
    assert main(["simulate", "--out", str(tmp_path / "r"), "--synthetic", "--data", "d"]) == 2
    # what describes synthetic hospitals does not apply to real ones
    assert (
        main(["simulate", "--out", str(tmp_path / "r"), "--data", "d", "--vendors", "halide"]) == 2
    )
    args = ["simulate", "--out", str(tmp_path / "r"), "--data", "d", "--ffdm-artifacts"]
    assert main(args) == 2


def test_synth_draws_paddle_edges_and_skin_folds_when_asked(tmp_path):
    args = ["synth", "--hospitals", "1", "--exams", "3", "--seed", "4", "-q"]
    assert main([*args, "--out", str(tmp_path / "a"), "--ffdm-artifacts"]) == 0
    counts = json.loads((tmp_path / "a" / "hospital-1" / "synth.json").read_text())["counts"]
    assert counts["artifact_paddle_edge"] + counts["artifact_skin_fold"] > 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    counts = json.loads((tmp_path / "b" / "hospital-1" / "synth.json").read_text())["counts"]
    assert "artifact_paddle_edge" not in counts


def test_synth_writes_a_screening_film_consortium_and_inspect_needs_its_spacing(tmp_path):
    out = tmp_path / "film"
    args = ["synth", "--out", str(out), "--hospitals", "1", "--exams", "4", "-q"]
    assert main([*args, "--vendors", "halide", "--finding-rate", "0.03"]) == 0
    info = json.loads((out / "hospital-1" / "synth.json").read_text())
    assert info["vendor"]["name"] == "halide" and info["finding_rate"] == 0.03
    assert info["counts"]["artifact_label"] == info["counts"]["images"]
    report = tmp_path / "summary.json"
    main(["inspect", str(out / "hospital-1"), "--json", str(report), "-q"])
    assert json.loads(report.read_text())["images"]["usable"] == 0  # no spacing: refused
    told = ["inspect", str(out / "hospital-1"), "--json", str(report), "-q"]
    assert main([*told, "--fallback-spacing", "0.05"]) == 0
    assert json.loads(report.read_text())["images"]["refused"] == 0


def test_mrmc_and_plan_commands(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    lines = ["modality,reader,case,truth,rating"]
    truth = rng.random(60) < 0.4
    for m, gain in (("alone", 0.0), ("aided", 0.7)):
        for r in range(4):
            for c in range(60):
                x = rng.normal() + truth[c] * (1.2 + gain)
                lines.append(f"{m},{r},{c},{int(truth[c])},{int(np.digitize(x, [-1, 0, 1, 2]))}")
    path = tmp_path / "pilot.csv"
    path.write_text("\n".join(lines) + "\n")
    assert main(["mrmc", str(path), "--out", str(tmp_path / "mrmc")]) == 0
    out = json.loads((tmp_path / "mrmc" / "mrmc.json").read_text())
    assert out["results"]["design.n_readers"] == 4
    assert "DBM random readers and cases" in capsys.readouterr().out
    assert main(["reader-study", "--plan", str(path), "--out", str(tmp_path / "plan")]) == 0
    plan = json.loads((tmp_path / "plan" / "study_plan.json").read_text())
    assert plan["effect"] == pytest.approx(abs(out["results"]["auc.diff"]))
    assert (tmp_path / "plan" / "study_plan.png").stat().st_size > 10_000
    assert "| Readers | Cases needed | Power |" in (tmp_path / "plan" / "study_plan.md").read_text()
    assert main(["reader-study", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "--model", "m", "--out", "o", "f.dcm"],
        ["evaluate", "--model", "m", "--data", "d"],
        ["reader-study", "--model", "m", "--data", "d"],
        ["train-central", "--data", "d", "--out", "o"],
        ["simulate", "--out", "o", "--data", "d"],
        ["inspect", "d"],
    ],
)
def test_every_command_that_reads_images_takes_the_reading_options(command):
    from cli.options import node_reading, read_options
    from common.imaging.reading import ReadOptions

    given = ["--fallback-spacing", "0.05", "--for-processing", "normalize", "--any-modality"]
    args = build_parser().parse_args([*command, *given])
    model = ReadOptions(target_spacing_mm=0.07)
    read = read_options(args, model)
    assert read.target_spacing_mm == 0.07 and read.fallback_spacing_mm == 0.05
    assert read.for_processing == "normalize" and read.modalities is None
    assert node_reading(args) == {
        "fallback-spacing": 0.05,
        "for-processing": "normalize",
        "any-modality": True,
    }
    # nothing given: the model's own options, unchanged
    plain = build_parser().parse_args(command)
    assert read_options(plain, model) == model and node_reading(plain) == {}


def test_precision_comes_from_the_command_line_or_else_the_model():
    from cli.models import with_precision
    from common.learning.inference import CascadeConfig

    parser = build_parser()
    model = CascadeConfig(precision="auto")
    for command in (["predict", "--out", "o", "x.dcm"], ["evaluate", "--data", "d"]):
        args = parser.parse_args([*command, "--model", "m", "--precision", "float32"])
        assert with_precision(args, model).precision == "float32"
        assert with_precision(parser.parse_args([*command, "--model", "m"]), model) == model
    with pytest.raises(SystemExit):
        parser.parse_args(["calibrate", "--model", "m", "--data", "d", "--out", "p.json",
                           "--precision", "half"])  # fmt: skip
