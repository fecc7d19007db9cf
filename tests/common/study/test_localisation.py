"""Readers' marks localised on findings, and the wAFROC panels they give per role."""

import math
from pathlib import Path

import numpy as np

from common.data.marks import Mark
from common.data.records import Finding, ImageRecord, ReaderRead
from common.study.arms import StudyConfig, build_cases, study_stats, wafroc_panels
from common.study.localisation import BreastViews, localise

SPACING = (0.1, 0.1)  # mm: 1 mm = 10 stored pixels


def _views():
    malignant = Finding("1", "malignant", box=(100, 100, 140, 150))
    benign = Finding("2", "benign", box=(300, 300, 320, 320))
    mlo = Finding("1", "malignant", box=(500, 200, 520, 230))
    return BreastViews({"CC": [malignant, benign], "MLO": [mlo]}, {"CC": SPACING, "MLO": SPACING})


def test_a_mark_localises_within_the_box_grown_by_one_mm():
    views = _views()
    assert views.lesions == ("1",)
    inside = localise((Mark("CC", 120, 120, 60),), views)
    assert inside.lesions == {"1": 60.0} and math.isnan(inside.non_lesion)
    edge = localise((Mark("CC", 149.5, 159.5, 40),), views)  # 9.5 px beyond both edges
    assert edge.lesions == {"1": 40.0}
    beyond = localise((Mark("CC", 151, 120, 40),), views)  # 11 px below the box
    assert math.isnan(beyond.lesions["1"]) and beyond.non_lesion == 40.0


def test_lesions_keep_their_id_over_views_and_benign_marks_are_not_lesions():
    marks = (
        Mark("CC", 120, 120, 30),
        Mark("MLO", 510, 210, 80),  # the same lesion on MLO: its highest rating counts
        Mark("CC", 310, 310, 90),  # on the benign finding
        Mark("MLO", 120, 120, 20),  # CC's box position, but on MLO: no lesion there
    )
    read = localise(marks, _views())
    assert read.lesions == {"1": 80.0} and read.non_lesion == 90.0


def test_spacing_per_axis_sets_the_tolerance():
    views = BreastViews(
        {"CC": [Finding("1", "malignant", box=(0, 0, 10, 10))]}, {"CC": (0.05, 0.2)}
    )
    # 1 mm is 20 rows but only 5 columns
    assert not math.isnan(localise((Mark("CC", 29, 5, 1),), views).lesions["1"])
    assert math.isnan(localise((Mark("CC", 5, 16, 1),), views).lesions["1"])


def _wafroc(fp, lesions):
    """RJafroc's wAFROC of one reading, equal lesion weights, unmarked = -inf, ties ½."""
    fp = [-np.inf if np.isnan(x) else x for x in fp]
    total = 0.0
    for case in lesions:
        for f in fp:
            for x in case:
                x = -np.inf if np.isnan(x) else x
                total += (1.0 if f < x else 0.5 if f == x else 0.0) / len(case)
    return total / (len(fp) * len(lesions))


def _study(seed, breasts=40, readers=("j1", "j2")):
    """Breasts of one or two malignant lesions or none, and marking readers of one role."""
    rng = np.random.default_rng(seed)
    images, reads = [], []
    for b in range(breasts):
        n = int(rng.choice([0, 0, 1, 2]))
        cc = [
            Finding(str(i + 1), "malignant", box=(100 * i, 50, 100 * i + 30, 80)) for i in range(n)
        ]
        mlo = [
            Finding(str(i + 1), "malignant", box=(100 * i, 300, 100 * i + 30, 330))
            for i in range(n)
        ]
        for view, findings in (("CC", cc), ("MLO", mlo)):
            images.append(
                ImageRecord(Path(f"{b}{view}.dcm"), f"P{b}", f"P{b}", "L", view, findings=findings)
            )
        for reader in readers:
            for aided in (False, True):
                marks = []
                for i in range(n):
                    if rng.random() < (0.8 if aided else 0.6):
                        view, col = ("CC", 60) if rng.random() < 0.5 else ("MLO", 310)
                        marks.append(Mark(view, 100 * i + 10, col, float(rng.integers(30, 101))))
                if rng.random() < 0.4:  # a false mark far from any finding
                    marks.append(Mark("CC", 900, 900, float(rng.integers(0, 90))))
                reads.append(
                    ReaderRead(
                        f"P{b}", f"P{b}", "L", reader, "junior", 3, 50.0, aided, marks=tuple(marks)
                    )
                )
    return images, reads


def test_wafroc_panel_of_reads_is_rjafroc_wafroc():
    images, reads = _study(1)
    cases = build_cases(images, reads, spacing=lambda im: SPACING)
    roles = {"j1": "junior", "j2": "junior"}
    ((name, panel),) = wafroc_panels(list(cases.values()), roles, 101)[0]
    assert name == "junior: unaided vs aided (wAFROC)"
    theta = panel.fom()[0].reshape(2, 2)
    for t, aided in enumerate((False, True)):
        for r, reader in enumerate(("j1", "j2")):
            fp, lesions = [], []
            for case in cases.values():
                m = localise(case.reads[(reader, aided)].marks, case.views)
                if case.malignant:
                    lesions.append([m.lesions[i] / 100 for i in case.views.lesions])
                else:
                    fp.append(m.non_lesion / 100)
            level = lambda x: np.nan if np.isnan(x) else np.minimum(np.floor(x * 100), 99)  # noqa: E731
            expected = _wafroc([level(x) for x in fp], [[level(x) for x in c] for c in lesions])
            assert abs(theta[t, r] - expected) < 1e-12


def test_wafroc_panels_federate_from_sums():
    images, reads = _study(2, breasts=60)
    cases = build_cases(images, reads, spacing=lambda im: SPACING)
    roles = {"j1": "junior", "j2": "junior"}
    items = list(cases.values())
    whole = wafroc_panels(items, roles, 51)[0][0][1]
    halves = [wafroc_panels(part, roles, 51)[0][0][1] for part in (items[:25], items[25:])]
    summed = halves[0] + halves[1]
    assert summed.to_dict() == whole.to_dict()


def test_study_stats_carry_wafroc_panels_and_say_who_lacks_marks():
    images, reads = _study(3)
    # one reader's aided reads carry no marks: left out of the panel, and said so
    reads = [
        r if not (r.reader_id == "j2" and r.aided) else ReaderRead(**{**vars(r), "marks": None})
        for r in reads
    ]
    cases = build_cases(images, reads, spacing=lambda im: SPACING)
    stats = study_stats(cases, StudyConfig(arms=("j1", "j1:aided", "j2", "j2:aided")), 0.5)
    panel = stats.panels["junior: unaided vs aided (wAFROC)"][0]
    assert panel.readers == ("j1",)
    assert "junior: unaided vs aided (wAFROC): j2 has reads without marks" in stats.unavailable
    # without the images' geometry there is nothing to localise marks on
    bare = study_stats(build_cases(images, reads), StudyConfig(arms=("j1", "j1:aided")), 0.5)
    assert not any("wAFROC" in name for name in bare.panels)
