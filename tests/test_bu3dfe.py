"""BU-3DFE loader on fixtures in the distribution's real naming (F0001_AN01WH_F2D.bmp), and its FERAtt recipe."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.data import BASIC7, DATASETS, DatasetError, load_dataset
from attnfer.data.bu3dfe import load_bu3dfe, parse_bu3dfe_name
from attnfer.data.labels import BU3DFE_CODES
from attnfer.engine.config import load_config, to_dict

CODES = ("AN", "DI", "FE", "HA", "NE", "SA", "SU")
# 6 women and 6 men; the first 4 subjects' files sit in the root, the others in subject folders F0004/ ...
SUBJECTS = [(f"F{i:04d}", "WH" if i % 2 else "AE") for i in range(1, 7)] + [
    (f"M{i:04d}", "BL" if i % 2 else "LA") for i in range(1, 7)
]
ETHNICITY = dict(SUBJECTS)


def _bmp(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path, format="BMP")


@pytest.fixture(scope="module")
def bu3dfe(tmp_path_factory):
    """The whole fixture tree, shared read-only by the tests of this module (they write elsewhere)."""
    root = tmp_path_factory.mktemp("bu3dfe") / "BU-3DFE"
    for k, (subject, eth) in enumerate(SUBJECTS):
        folder = root if k < 4 else root / subject
        for c, code in enumerate(CODES):
            for level in (0,) if code == "NE" else (1, 2, 3, 4):
                stem = f"{subject}_{code}{level:02d}{eth}"
                _bmp(folder / f"{stem}_F2D.bmp", 30 * c + level)
                # what else the distribution holds beside each 2-D image: ignored
                (folder / f"{stem}_F3D.wrl").write_text("#VRML V2.0 utf8\n")
                (folder / f"{stem}_RAW.wrl").write_text("#VRML V2.0 utf8\n")
                _bmp(folder / f"{stem}_F3D.bmp", 7)
                (folder / f"{stem}_F3D.bnd").write_text("1 0.0 0.0 0.0\n")
                (folder / f"{stem}_F3D.pse").write_text("0 0 0\n")
    (root / "README.txt").write_text("BU-3DFE\n")
    return root


def _all(data):
    """id -> (split, class name) over train / validation / test."""
    return {
        i: (s, data[s].class_names[t])
        for s in ("train", "validation", "test")
        for i, t in zip(data[s].ids, data[s].targets, strict=True)
    }


def test_names_parse_to_subject_expression_intensity_ethnicity():
    assert parse_bu3dfe_name("F0001_AN01WH_F2D.bmp") == ("F0001", "anger", 1, "WH")
    assert parse_bu3dfe_name("x/M0044_NE00BL_F2D.bmp") == ("M0044", "neutral", 0, "BL")
    assert parse_bu3dfe_name("M0002_SU04AM_F2D.BMP") == ("M0002", "surprise", 4, "AM")
    assert BU3DFE_CODES == {
        "AN": "anger",
        "DI": "disgust",
        "FE": "fear",
        "HA": "happiness",
        "NE": "neutral",
        "SA": "sadness",
        "SU": "surprise",
    }


def test_labels_intensities_and_ignored_files(bu3dfe):
    data = load_dataset("bu3dfe", bu3dfe, num_folds=4, fold=0)
    assert data.name == "bu3dfe" and data.class_names == list(BASIC7)  # 7 basic, canonical order
    got = _all(data)
    # default min_intensity=3: levels 03-04 of each expression and the neutral face (00)
    assert len(got) == len(SUBJECTS) * (6 * 2 + 1)
    assert all(not i.endswith(("F3D", "RAW")) for i in got)
    folders = {p.parent.name for s in ("train", "validation", "test") for p in data[s].paths}
    assert folders == {"BU-3DFE", *(s for s, _ in SUBJECTS[4:])}  # in the root and in subject folders
    for subject, eth in SUBJECTS:
        assert got[f"{subject}_NE00{eth}_F2D"][1] == "neutral"
        assert got[f"{subject}_AN04{eth}_F2D"][1] == "anger"
        assert got[f"{subject}_DI03{eth}_F2D"][1] == "disgust"
        assert got[f"{subject}_FE03{eth}_F2D"][1] == "fear"
        assert got[f"{subject}_HA04{eth}_F2D"][1] == "happiness"
        assert got[f"{subject}_SA03{eth}_F2D"][1] == "sadness"
        assert got[f"{subject}_SU04{eth}_F2D"][1] == "surprise"
        assert f"{subject}_AN02{eth}_F2D" not in got and f"{subject}_HA01{eth}_F2D" not in got
    counts = {c: sum(v[1] == c for v in got.values()) for c in BASIC7}
    assert counts == {"neutral": 12, **{c: 24 for c in BASIC7 if c != "neutral"}}
    # extras and pixels come from the right file
    ds = data["train"]
    k = next(i for i, n in enumerate(ds.ids) if "_SU04" in n)
    subject = ds.ids[k][:5]
    assert ds.extras["subject"][k] == subject and ds.extras["intensity"][k] == 4
    assert ds.extras["ethnicity"][k] == ETHNICITY[subject]
    assert ds.load_image(k)[0, 0, 0] == 30 * CODES.index("SU") + 4
    assert data.notes and "intensities 03-04" in data.notes[0] and "12 subjects" in data.notes[0]


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_min_intensity(bu3dfe, level):
    data = load_bu3dfe(bu3dfe, min_intensity=level, num_folds=4)
    got = _all(data)
    assert len(got) == len(SUBJECTS) * (6 * (5 - level) + 1)
    intensities = [n for s in ("train", "validation", "test") for n in data[s].extras["intensity"]]
    assert sorted(set(intensities)) == [0, *range(level, 5)]  # neutral (00) whatever the level


def test_without_neutral_and_bad_options(bu3dfe):
    data = load_bu3dfe(bu3dfe, neutral=False, min_intensity=4, num_folds=4)
    assert data.class_names == [c for c in BASIC7 if c != "neutral"]
    assert len(_all(data)) == len(SUBJECTS) * 6
    with pytest.raises(ValueError, match="min_intensity must be an intensity level 1-4, got 0"):
        load_bu3dfe(bu3dfe, min_intensity=0)
    with pytest.raises(ValueError, match=r"fold must be in \[0, 4\), got 4"):
        load_bu3dfe(bu3dfe, num_folds=4, fold=4)


def test_folds_are_subject_independent(bu3dfe):
    tested = []
    for fold in range(4):
        data = load_dataset("bu3dfe", bu3dfe, num_folds=4, fold=fold, seed=3, val_fraction=0.2)
        subjects = {s: set(data[s].extras["subject"]) for s in ("train", "validation", "test")}
        assert all(subjects.values())
        assert not subjects["train"] & subjects["validation"]
        assert not subjects["train"] & subjects["test"]
        assert not subjects["validation"] & subjects["test"]
        assert set().union(*subjects.values()) == {s for s, _ in SUBJECTS}
        assert data.validation_source != "dataset"  # carved from train, by subject
        tested.append(subjects["test"])
    # every subject is tested in exactly one fold; fold sizes differ by at most one subject (12 into 4: 3 each)
    assert sorted(s for t in tested for s in t) == sorted(s for s, _ in SUBJECTS)
    assert [len(t) for t in tested] == [3, 3, 3, 3]
    # deterministic for a seed, different for another
    again = load_dataset("bu3dfe", bu3dfe, num_folds=4, fold=0, seed=3)
    assert set(again["test"].extras["subject"]) == tested[0]
    other = [set(load_bu3dfe(bu3dfe, num_folds=4, fold=k, seed=4)["test"].extras["subject"]) for k in range(4)]
    assert other != tested


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("F0001_XX01WH_F2D.bmp", "unknown expression code 'XX'.*expected one of AN, DI, FE, HA, NE, SA, SU"),
        ("F0001_AN1WH_F2D.bmp", "malformed BU-3DFE 2-D image name 'F0001_AN1WH_F2D.bmp': expected"),
        ("F001_AN01WH_F2D.bmp", "malformed BU-3DFE 2-D image name.*such as F0001_AN01WH_F2D.bmp"),
        ("F0001_NE01WH_F2D.bmp", "neutral image 'F0001_NE01WH_F2D.bmp' has intensity 01, expected 00"),
        ("F0001_HA05WH_F2D.bmp", "has intensity 05, expected 01-04 for HA"),
        ("F0001_HA00WH_F2D.bmp", "has intensity 00, expected 01-04 for HA"),
    ],
)
def test_a_malformed_name_is_an_error_naming_the_file(tmp_path, name, message):
    root = _small(tmp_path)
    _bmp(root / "F0001" / name, 1)
    with pytest.raises(DatasetError, match=message) as e:
        load_dataset("bu3dfe", root)
    assert str(e.value).startswith(str(root / "F0001" / name))


def _small(tmp_path):
    """Three subjects with well-formed names and distractors, for the error cases."""
    root = tmp_path / "small"
    for subject in ("F0001", "F0002", "M0001"):
        for stem in (f"{subject}_NE00WH", f"{subject}_HA04WH"):
            _bmp(root / subject / f"{stem}_F2D.bmp", 1)
            _bmp(root / subject / f"{stem}_F3D.bmp", 1)
            (root / subject / f"{stem}_F3D.wrl").write_text("")
    return root


def test_misplaced_duplicate_and_missing_images(tmp_path):
    root = _small(tmp_path)
    assert len(_all(load_bu3dfe(root, num_folds=3))) == 6
    _bmp(root / "M0001" / "F0001_AN04WH_F2D.bmp", 1)
    with pytest.raises(DatasetError, match="image of subject F0001 in the folder of subject M0001"):
        load_bu3dfe(root, num_folds=3)
    (root / "M0001" / "F0001_AN04WH_F2D.bmp").unlink()
    _bmp(root / "F0001_HA04WH_F2D.bmp", 1)  # also in F0001/
    with pytest.raises(DatasetError, match="the same image is also at"):
        load_bu3dfe(root, num_folds=3)
    empty = tmp_path / "empty"
    (empty / "F0001").mkdir(parents=True)
    (empty / "F0001" / "F0001_AN01WH_F3D.wrl").write_text("")
    with pytest.raises(DatasetError, match="no BU-3DFE 2-D images found"):
        load_bu3dfe(empty)
    with pytest.raises(DatasetError, match="missing: expected a BU-3DFE folder"):
        load_bu3dfe(tmp_path / "nope")


def test_registered_and_inspected_through_the_cli(bu3dfe, tmp_path):
    assert "bu3dfe" in DATASETS
    runner = CliRunner(env={"COLUMNS": "200"})  # the table's class columns unabridged
    options = ["-o", "num_folds=4", "-o", "min_intensity=4"]
    r = runner.invoke(app, ["data", "inspect", str(bu3dfe), "-d", "bu3dfe", *options])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "bu3dfe at" in out and "fold 0 of 4 (subject-independent" in out and "intensities 04" in out
    header = next(line for line in r.output.splitlines() if "split" in line)
    assert [header.index(f" {c} ") for c in BASIC7] == sorted(header.index(f" {c} ") for c in BASIC7)
    assert "no problems found" in out
    root = _small(tmp_path)
    _bmp(root / "F0001_SU4WH_F2D.bmp", 1)
    r = runner.invoke(app, ["data", "inspect", str(root), "-d", "bu3dfe"])
    assert r.exit_code == 1 and "F0001_SU4WH_F2D.bmp" in r.output and "malformed" in r.output


def test_feratt_bu3dfe_recipe(bu3dfe):
    from attnfer.engine.data import load_run_data

    recipe = Path(__file__).parents[1] / "src" / "attnfer" / "configs" / "feratt_bu3dfe.yaml"
    d = to_dict(load_config(recipe))
    assert d["name"] == "feratt_bu3dfe" and d["model"]["name"] == "feratt"
    assert d["data"]["name"] == "bu3dfe" and d["data"]["compositing"] is False
    assert d["data"]["options"] == {"min_intensity": 3, "neutral": True, "num_folds": 10, "fold": 0}
    assert d["loss"]["attention"] == 0.0  # no face-on-black target without compositing
    assert "No compositing" in recipe.read_text()
    # the engine loads it with the recipe's options and its data.val_fraction
    over = {"data.root": str(bu3dfe), "data.options.num_folds": 4, "data.val_fraction": 0.3}
    data = load_run_data(load_config(recipe, over))
    assert data.class_names == list(BASIC7) and len(_all(data)) == len(SUBJECTS) * 13
    assert "30% of subjects" in data.validation_source
