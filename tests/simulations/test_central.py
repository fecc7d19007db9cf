"""synth → train-central → evaluate → predict, on tiny data, through the CLI."""

import csv
import json

import pytest

from cli.main import main
from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.evaluation.images import EvalStats
from common.learning.inference import run_cascade
from common.learning.models import load_run
from common.learning.samples import ImageStore


@pytest.fixture(scope="module")
def run(tmp_path_factory, consortium):
    out = tmp_path_factory.mktemp("run")
    sites = [str(consortium / f"hospital-{h}") for h in (1, 3)]
    code = main(
        [
            "train-central",
            "--data",
            *sites,
            "--out",
            str(out / "model"),
            "--detector-epochs",
            "1",
            "--classifier-epochs",
            "2",
            "-q",
            "--cache",
            str(out / "cache"),
        ]
    )
    assert code == 0
    return out


def test_train_central_writes_a_loadable_run(run):
    model = run / "model"
    assert {p.name for p in model.iterdir()} >= {
        "detector.pt",
        "classifier.pt",
        "model.json",
        "train.json",
    }
    spec = json.loads((model / "model.json").read_text())
    assert spec["preprocessing"]["target_spacing_mm"] == 0.1 and spec["dp"] is None
    assert spec["models"]["classifier"]["arch"] == "cnn"
    summary = json.loads((model / "train.json").read_text())
    assert summary["detector"]["history"] and summary["classifier"]["history"]
    # the operating point was calibrated on the validation images and saved with the model
    marks = summary["marks"]
    assert marks["threshold"] == spec["cascade"]["mark_threshold"]
    assert 0.0 <= marks["threshold"] <= 1.0 and marks["images"] > 0
    assert marks["false_marks_per_full_field_image"] <= spec["cascade"]["max_false_marks"]


def test_train_central_mines_the_detectors_false_peaks(consortium, tmp_path):
    out = tmp_path / "model"
    args = ["train-central", "--data", str(consortium / "hospital-1"), "--out", str(out)]
    args += ["--detector-epochs", "1", "--classifier-epochs", "1", "-q"]
    assert main([*args, "--hard-negatives", "2", "--mining-epochs", "2"]) == 0
    summary = json.loads((out / "train.json").read_text())
    mined = summary["hard_negatives"]
    assert 0 < mined["mined_train_patches"] <= 2 * summary["images"]["train"]
    history = summary["detector"]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert [row.get("mined", False) for row in history] == [False, True, True]
    assert summary["detector"]["best_epoch"] in (2, 3)  # the model ends fine-tuned


def test_train_central_fits_a_verifier_that_weighs_every_cluster(consortium, tmp_path):
    out = tmp_path / "model"
    data = [str(consortium / f"hospital-{h}") for h in (1, 2)]
    args = ["train-central", "--data", *data, "--out", str(out)]
    args += ["--detector-epochs", "1", "--classifier-epochs", "1", "-q"]
    assert main([*args, "--dp", "--verifier"]) == 2  # refused, nothing trained
    assert not out.exists()
    assert main([*args, "--verifier"]) == 0
    summary = json.loads((out / "train.json").read_text())
    fit = summary["verifier"]
    assert fit["findings"] >= 5 and fit["false_clusters"] >= 5
    models, _, cascade, _ = load_run(out)
    assert "verifier" in models and cascade.mark_threshold is not None
    store = ImageStore(PreprocessCache(tmp_path / "cache"))
    record = next(im for im in load_hospital(consortium / "hospital-3", echo=False).images)
    result = run_cascade(models, store.get(record), cascade)
    assert result.clusters
    for c in result.clusters:
        assert 0 < c.verification < 1
        # a cluster strung along a line is set aside after the verifier has weighed it
        weighed = 0.0 if c.artifact else c.detector_score * c.verification
        assert c.detection_score == pytest.approx(weighed)


def test_evaluate_writes_metrics_and_plots(run, consortium, capsys):
    out = run / "eval"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(run / "model"),
                "--data",
                str(consortium / "hospital-1"),
                "--split",
                "all",
                "--out",
                str(out),
                "-q",
                "--cache",
                str(run / "cache"),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    det = metrics["summary"]["detection"]
    assert det["lesions"] > 0
    # the written metrics are those of the written statistics (what a hospital would pool)
    stats = EvalStats.from_dict(metrics["statistics"])
    threshold = json.loads((run / "model" / "model.json").read_text())["cascade"]["mark_threshold"]
    summary = stats.summary(operating_point=0.5, mark_threshold=threshold)
    assert json.loads(json.dumps(summary)) == metrics["summary"]
    full = metrics["summary"]["detection"]["full_field"]
    assert full["mark_threshold"] == threshold and full["breast_cm2"] > 0
    assert "full-field" in (out / "metrics.md").read_text()
    images = load_hospital(consortium / "hospital-1", echo=False).images
    breasts = {im.breast_key for im in images}
    breast = metrics["summary"]["breast"]
    assert breast["positives"] + breast["negatives"] == len(breasts)
    assert "statistics" in metrics and "DeLong" in (out / "metrics.md").read_text()
    for png in ("roc.png", "froc.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_hospital_calibrates_its_own_operating_point(run, consortium, tmp_path, capsys, caplog):
    model, site = str(run / "model"), str(consortium / "hospital-2")  # not trained on
    common = ["--model", model, "--data", site, "--cache", str(run / "cache"), "-q"]
    strict, loose = tmp_path / "strict.json", tmp_path / "loose.json"
    assert main(["calibrate", *common, "--out", str(strict)]) == 0
    assert "operating point" in capsys.readouterr().out
    assert main(["calibrate", *common, "--max-false-marks", "20", "--out", str(loose)]) == 0
    a, b = json.loads(strict.read_text()), json.loads(loose.read_text())
    assert a["calibration"]["false_marks_per_full_field_image"] <= 0.5
    assert b["calibration"]["false_marks_per_full_field_image"] <= 20.0
    assert b["mark_threshold"] <= a["mark_threshold"] and a["images"] == b["images"] > 0
    model_spec = json.loads((run / "model" / "model.json").read_text())
    assert a["model_mark_threshold"] == model_spec["cascade"]["mark_threshold"]
    # predict and evaluate mark at the hospital's point; model.json is left as it was
    image = next((consortium / "hospital-2").rglob("Calc-*_CC/*/*/000000.dcm"))
    out = tmp_path / "pred"
    assert main(["predict", "--model", model, str(image), "--out", str(out),
                 "--operating-point", str(loose)]) == 0  # fmt: skip
    (result,) = [json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "reading.json"]
    assert result["mark_threshold"] == b["mark_threshold"]
    assert result["n_marks"] == sum(
        c["detection_score"] >= b["mark_threshold"] for c in result["clusters"]
    )
    assert json.loads((run / "model" / "model.json").read_text()) == model_spec
    out = tmp_path / "none"
    assert main(["predict", "--model", model, str(image), "--out", str(out),
                 "--mark-threshold", "1.01"]) == 0  # fmt: skip
    (result,) = [json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "reading.json"]
    assert result["n_marks"] == 0 and result["mark_threshold"] == 1.01
    # every cluster judged alike: none set aside as a scratch or a vessel's tracks
    out = tmp_path / "lines"
    assert main(["predict", "--model", model, str(image), "--out", str(out),
                 "--mark-threshold", "0", "--keep-line-clusters"]) == 0  # fmt: skip
    (result,) = [json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "reading.json"]
    assert all(c["artifact"] is None and c["marked"] for c in result["clusters"])
    assert result["n_marks"] == len(result["clusters"])
    evaluated = tmp_path / "eval"
    assert main(["evaluate", *common, "--split", "all", "--out", str(evaluated),
                 "--operating-point", str(strict)]) == 0  # fmt: skip
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["summary"]["detection"]["full_field"]["mark_threshold"] == a["mark_threshold"]
    # a file that is not an operating point: one line, exit status 2
    bogus = tmp_path / "bogus.json"
    bogus.write_text("{}")
    assert main(["predict", "--model", model, str(image), "--out", str(out),
                 "--operating-point", str(bogus)]) == 2  # fmt: skip
    assert "bogus.json: not an operating point" in caplog.text
    # a point calibrated for another model's detector is refused, not applied
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**a, "detector_sha256": "0" * 64}))
    assert main(["predict", "--model", model, str(image), "--out", str(out),
                 "--operating-point", str(other)]) == 2  # fmt: skip
    assert "calibrated for another detector" in caplog.text
    # a point records whether clusters along lines were set aside; used the other way it
    # would mark more than it was set for, so it is refused
    assert a["line_artifacts"] is True
    judged = tmp_path / "judged.json"
    assert main(["calibrate", *common, "--keep-line-clusters", "--out", str(judged)]) == 0
    assert json.loads(judged.read_text())["line_artifacts"] is False
    for point, keep, code in ((judged, False, 2), (judged, True, 0), (strict, True, 2)):
        caplog.clear()
        assert main(["predict", "--model", model, str(image), "--out", str(tmp_path / "l"),
                     "--operating-point", str(point)]
                    + ["--keep-line-clusters"] * keep) == code  # fmt: skip
        assert ("calibrated with clusters along lines" in caplog.text) == (code == 2)


def test_predict_outputs_and_bad_files(run, consortium, tmp_path):
    image = next((consortium / "hospital-2").rglob("Calc-*_CC/*/*/000000.dcm"))
    bad = tmp_path / "bad.dcm"
    bad.write_text("not dicom")
    out = tmp_path / "pred"
    code = main(["predict", "--model", str(run / "model"), str(image), str(bad), "--out", str(out)])
    assert code == 1  # one file refused, the other processed
    rows = list(csv.DictReader((out / "index.csv").open()))
    assert len(rows) == 1 and rows[0]["file"] == str(image)
    result = json.loads((out / f"{rows[0]['output']}.json").read_text())
    assert {"image_score", "points_rc", "stored_points_rc", "clusters"} <= set(result)
    assert (out / f"{rows[0]['output']}.png").stat().st_size > 1000
    assert "PatientID" not in json.dumps(result)


def test_train_central_with_dp_reports_epsilon(consortium, tmp_path):
    out = tmp_path / "dp"
    code = main(
        [
            "train-central",
            "--data",
            str(consortium / "hospital-4"),
            "--out",
            str(out),
            "--detector-epochs",
            "1",
            "--classifier-epochs",
            "2",
            "--dp",
            "--epsilon",
            "5",
            "--delta",
            "1e-5",
            "-q",
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    summary = json.loads((out / "train.json").read_text())
    for part in ("detector", "classifier"):
        privacy = summary[part]["privacy"]
        assert 0 < privacy["epsilon"] <= 5.0 + 1e-6 and privacy["delta"] == 1e-5
        assert "accountant" not in privacy  # the history stays with the trainer
    both = summary["privacy"]  # the two models see the same findings
    det, cls = (
        summary["detector"]["privacy"]["epsilon"],
        summary["classifier"]["privacy"]["epsilon"],
    )
    assert max(det, cls) < both["composed_epsilon"] <= det + cls + 1e-9
    assert both["delta"] == 1e-5 and both["examples_per_patient"] > 1
    assert both["patient_epsilon"] == both["examples_per_patient"] * both["composed_epsilon"]
    spec = json.loads((out / "model.json").read_text())
    assert spec["dp"]["target_epsilon"] == 5.0
    assert spec["models"]["classifier"]["arch"] == "descriptors"  # automatic with --dp


def test_dp_picks_fixed_schedules_and_the_descriptor_classifier():
    from common.learning.dp import DPConfig
    from common.learning.training import TrainConfig
    from simulations.central import CentralConfig

    plain = CentralConfig()
    assert plain.classifier_config().arch == "cnn"
    assert plain.detector_schedule() == plain.detector_train
    assert plain.classifier_schedule() == plain.classifier_train
    dp = CentralConfig(dp=DPConfig(target_epsilon=8.0), detector_train=TrainConfig(epochs=7))
    assert dp.classifier_config().arch == "descriptors"
    det, cls = dp.detector_schedule(), dp.classifier_schedule()
    # noisy validation losses cannot rank DP epochs: fixed schedules, last weights
    assert (det.epochs, det.patience, det.restore_best, det.batch_size) == (7, 0, False, 128)
    assert det.frozen == ("stem.",) and plain.detector_schedule().frozen == ()
    assert det.lr > dp.detector_train.lr
    assert (cls.patience, cls.restore_best, cls.lr) == (0, False, 0.3)
    own = TrainConfig(epochs=2)
    assert CentralConfig(dp=dp.dp, dp_detector_train=own).detector_schedule() is own


def _film_like(source, path):
    """A copy of ``source`` as a film scanner writes it: no spacing, no ViewPosition, RLE."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.uid import RLELossless

    from common.imaging.writing import save

    ds = pydicom.dcmread(source)
    ds.decompress()
    for keyword in ("ImagerPixelSpacing", "PixelSpacing", "ViewPosition"):
        if keyword in ds:
            delattr(ds, keyword)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "399162004", "SCT"
    code.CodeMeaning = "kraniokaudal"  # a localised meaning: the code decides
    ds.ViewCodeSequence = [code]
    return save(ds, path, RLELossless)


def test_predict_reads_film_without_spacing_when_told_one(run, consortium, tmp_path, caplog):
    source = next((consortium / "hospital-2").rglob("Calc-*_CC/*/*/000000.dcm"))
    film = _film_like(source, tmp_path / "film.dcm")
    before = film.read_bytes()
    model = str(run / "model")
    assert main(["predict", "--model", model, str(film), "--out", str(tmp_path / "a")]) == 1
    (line,) = [r.getMessage() for r in caplog.records if "film.dcm" in r.getMessage()]
    assert "no ImagerPixelSpacing or PixelSpacing" in line and "\n" not in line
    out = tmp_path / "b"
    code = main(
        ["predict", "--model", model, str(film), "--fallback-spacing", "0.05", "--out", str(out)]
    )
    assert code == 0 and film.read_bytes() == before
    (row,) = csv.DictReader((out / "index.csv").open())
    result = json.loads((out / f"{row['output']}.json").read_text())
    assert result["image"]["view"] == "CC" and result["image"]["spacing_source"] == "fallback"
    reading = json.loads((out / "reading.json").read_text())
    assert reading["fallback_spacing_mm"] == 0.05 and reading["target_spacing_mm"] == 0.1


def test_the_detector_alone_gives_the_same_detection_statistics(run, consortium):
    from common.data.cache import PreprocessCache
    from common.evaluation.images import detection_stats, evaluate_images
    from common.learning.models import load_run
    from common.learning.samples import ImageStore

    models, read, cascade, _ = load_run(run / "model")
    store = ImageStore(PreprocessCache(run / "cache", read))
    images = load_hospital(consortium / "hospital-1", echo=False).images
    full, _ = evaluate_images(models, images, store, cascade)
    alone = detection_stats(models, images, store, cascade)
    assert alone.froc.to_dict() == full.froc.to_dict() and alone.froc.images == len(images)
    assert alone.finding_roc.n_pos + alone.finding_roc.n_neg == 0  # no classifier ran


@pytest.mark.parametrize("extra", [{"hard_negatives": 2}, {"verifier": True}])
def test_mining_and_the_verifier_are_refused_with_dp_before_any_training(tmp_path, extra):
    from common.learning.dp import DPConfig
    from simulations.central import CentralConfig, train_central

    config = CentralConfig(dp=DPConfig(target_epsilon=8.0), **extra)
    with pytest.raises(ValueError, match="not used with DP-SGD"):
        train_central([tmp_path / "no-such-site"], tmp_path / "model", config)
    assert not (tmp_path / "model").exists()
