"""Tests of the dataset loaders, on tiny files written here (and BIQ2021 when present)."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.io import savemat

from sklearn_mlsp.datasets import load_ava, load_clive, load_csv_dataset


def _jpeg(path, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path, format="JPEG")


def _bmp(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (5, 4), (10, 20, 30)).save(path, format="BMP")


# --------------------------------------------------------------------------
# AVA
# --------------------------------------------------------------------------

# Hand-computed: (5*1 + 6*2 + 7*1) / 4 = 6.0 and (1 + 10) / 2 = 5.5.
_COUNTS_6 = [0, 0, 0, 0, 1, 2, 1, 0, 0, 0]
_COUNTS_5_5 = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]


def _ava_counts(i):
    counts = [0] * 10
    counts[i % 10] = 3
    counts[(3 * i + 1) % 10] += 2
    return counts


def _write_ava(
    root, n=60, n_test=12, zero_votes=(), absent=(), corrupt=(), extra_lines=()
):
    """AVA layout with ids 1000..1000+n-1; the last n_test ids are the test list."""
    ids = list(range(1000, 1000 + n))
    lines = []
    for k, image_id in enumerate(ids):
        counts = _ava_counts(k)
        if k == 0:
            counts = _COUNTS_6
        if k == 1:
            counts = _COUNTS_5_5
        if image_id in zero_votes:
            counts = [0] * 10
        fields = [k + 1, image_id, *counts, k % 67, 0, 900 + k % 3]
        lines.append(" ".join(map(str, fields)))
    lines.extend(extra_lines)
    (root / "AVA.txt").write_text("\n".join(lines) + "\n")
    lists = root / "aesthetics_image_lists"
    lists.mkdir(parents=True, exist_ok=True)
    test_ids = ids[-n_test:]
    (lists / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in test_ids))
    for image_id in ids:
        path = root / "images" / f"{image_id}.jpg"
        if image_id in absent:
            continue
        if image_id in corrupt:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"this is not a JPEG file at all")
        else:
            _jpeg(path)
    return ids, test_ids


def test_ava_mos_distribution_and_fields(tmp_path):
    ids, _ = _write_ava(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is missing: no warning
        data = load_ava(tmp_path)
    assert data.image_ids.dtype == np.int64
    np.testing.assert_array_equal(data.image_ids, ids)
    assert data.target[0] == pytest.approx(6.0)
    assert data.target[1] == pytest.approx(5.5)
    assert data.n_votes[0] == 4 and data.n_votes[1] == 2 and data.n_votes[2] == 5
    np.testing.assert_allclose(data.distribution[0], np.array(_COUNTS_6) / 4)
    np.testing.assert_allclose(data.distribution.sum(axis=1), 1.0)
    # MOS equals the mean of the expanded ratings for every row.
    for k in range(2, len(ids)):
        ratings = np.repeat(np.arange(1, 11), _ava_counts(k))
        assert data.target[k] == pytest.approx(ratings.mean())
    assert data.tags.shape == (len(ids), 2)
    assert data.tags[5].tolist() == [5, 0]
    assert data.challenge[4] == 901
    assert data.data[0] == str(tmp_path / "images" / "1000.jpg")
    assert data.data.dtype.kind == "U"
    assert data.frame is None
    assert len(data.missing) == 0
    assert list(data.missing.columns) == ["id", "path", "reason"]
    assert "AVA" in data.DESCR and "60 images" in data.DESCR


def test_ava_split_sizes_and_test_ids(tmp_path):
    _, test_ids = _write_ava(tmp_path, n=60, n_test=12)
    data = load_ava(tmp_path, validation_fraction=0.1, random_state=3)
    assert sorted(data.image_ids[data.split == "test"].tolist()) == test_ids
    assert (data.split == "validation").sum() == math.ceil(0.1 * 48)
    assert (data.split == "train").sum() == 48 - 5
    assert set(data.split) == {"train", "validation", "test"}
    # Seeded: same seed, same split; another seed, another validation set.
    again = load_ava(tmp_path, validation_fraction=0.1, random_state=3)
    np.testing.assert_array_equal(again.split, data.split)
    other = load_ava(tmp_path, validation_fraction=0.1, random_state=4)
    assert set(other.image_ids[other.split == "validation"]) != set(
        data.image_ids[data.split == "validation"]
    )
    # Default fraction 0.05 of 48 -> 3 validation images.
    assert (load_ava(tmp_path).split == "validation").sum() == 3


def test_ava_missing_unreadable_and_zero_votes_reported_and_dropped(tmp_path):
    _, test_ids = _write_ava(
        tmp_path, zero_votes=(1010,), absent=(1003, 1059), corrupt=(1020,)
    )
    with pytest.warns(UserWarning, match=r"AVA: 4 of 60 images left out") as record:
        data = load_ava(tmp_path)
    message = str(record[0].message)
    assert "2 file not found" in message and "1 unreadable image" in message
    assert "1 no votes" in message and "1003" in message
    assert len(data.image_ids) == 56
    assert not np.isin([1003, 1010, 1020, 1059], data.image_ids).any()
    reasons = dict(zip(data.missing["id"], data.missing["reason"]))
    assert set(reasons) == {1003, 1010, 1020, 1059}
    assert reasons[1003] == "file not found"
    assert reasons[1010] == "no votes"
    assert reasons[1020].startswith("unreadable image")
    assert data.missing["id"].tolist() == [1003, 1010, 1020, 1059]  # AVA.txt order
    # The missing test image is out of the test split (like 19,928 of 20,000).
    assert (data.split == "test").sum() == len(test_ids) - 1
    assert "4 left out" in data.DESCR


def test_ava_split_does_not_depend_on_missing_images(tmp_path):
    _write_ava(tmp_path, absent=(1001, 1002, 1005))
    with pytest.warns(UserWarning):
        checked = load_ava(tmp_path, validation_fraction=0.2)
    labels_only = load_ava(tmp_path, validation_fraction=0.2, check_images=False)
    assert len(labels_only.image_ids) == 60 and len(labels_only.missing) == 0
    kept = np.isin(labels_only.image_ids, checked.image_ids)
    np.testing.assert_array_equal(labels_only.split[kept], checked.split)


def test_ava_check_images_false_needs_no_images(tmp_path):
    _write_ava(tmp_path)
    data = load_ava(tmp_path, image_dir=tmp_path / "nowhere", check_images=False)
    assert len(data.image_ids) == 60
    assert data.data[0] == str(tmp_path / "nowhere" / "1000.jpg")
    with pytest.raises(FileNotFoundError, match="image directory not found"):
        load_ava(tmp_path, image_dir=tmp_path / "nowhere")


def test_ava_image_dir_test_ids_and_frame(tmp_path):
    _write_ava(tmp_path)
    (tmp_path / "images").rename(tmp_path / "elsewhere")
    with pytest.warns(UserWarning, match="1 of 3 test ids are not in AVA.txt"):
        data = load_ava(
            tmp_path,
            image_dir=tmp_path / "elsewhere",
            test_list=[1000, 1001, 5],
            as_frame=True,
        )
    assert data.image_ids[data.split == "test"].tolist() == [1000, 1001]
    frame = data.frame
    assert isinstance(frame, pd.DataFrame) and len(frame) == 60
    expected = ["id", "path", "mos", "split", "n_votes"]
    expected += [f"dist_{k}" for k in range(1, 11)] + ["tag1", "tag2", "challenge"]
    assert list(frame.columns) == expected
    assert frame["mos"].iloc[0] == pytest.approx(6.0)
    assert frame["path"].iloc[0].endswith("elsewhere/1000.jpg")


def test_ava_all_images_missing_is_an_error(tmp_path):
    _write_ava(tmp_path, n=10, n_test=2)
    for f in (tmp_path / "images").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="none of the 10 images could be used"):
        load_ava(tmp_path)


def test_ava_errors_name_the_problem(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"AVA.txt not found: looked for .*AVA.txt"
    ):
        load_ava(tmp_path)

    _write_ava(tmp_path, n=10, n_test=2, extra_lines=["11 2000 1 2 3"])
    with pytest.raises(ValueError, match=r"line 11: expected 15 .* found 5"):
        load_ava(tmp_path)

    _write_ava(
        tmp_path,
        n=10,
        n_test=2,
        # Blank and whitespace-only lines are skipped but still counted.
        extra_lines=["", "   ", " 11 2000 1 2 3 4 5 6 7 8 x.5 10 0 0 1"],
    )
    with pytest.raises(ValueError, match=r"line 13: 'x.5' is not an integer"):
        load_ava(tmp_path)

    _write_ava(
        tmp_path, n=10, n_test=2, extra_lines=["11 1003 1 2 3 4 5 6 7 8 9 10 0 0 1"]
    )
    with pytest.raises(
        ValueError, match=r"image id 1003 appears more than once \(lines \[4, 11\]\)"
    ):
        load_ava(tmp_path)

    _write_ava(tmp_path, n=10, n_test=2)
    with pytest.raises(ValueError, match="validation_fraction"):
        load_ava(tmp_path, validation_fraction=1.0)
    jpgl = tmp_path / "aesthetics_image_lists" / "generic_test.jpgl"
    jpgl.write_text("1000\n\n1001\nabc\n")
    with pytest.raises(ValueError, match=r"generic_test.jpgl, line 4: .*'abc'"):
        load_ava(tmp_path)
    jpgl.unlink()
    with pytest.raises(
        FileNotFoundError, match="test list not found: .*generic_test.jpgl"
    ):
        load_ava(tmp_path)


# --------------------------------------------------------------------------
# Label files
# --------------------------------------------------------------------------


def _write_images(image_dir, names):
    for name in names:
        _jpeg(image_dir / name)


def test_csv_basic_names_with_spaces_and_parentheses(tmp_path):
    names = ["ss03 (7805).jpg", "a b.jpg", "0001.jpg"]
    _write_images(tmp_path / "images", names)
    csv = tmp_path / "labels.csv"
    csv.write_text("image,mos\nss03 (7805).jpg,0.25\na b.jpg , 0.5\n\n0001.jpg,1e-1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_csv_dataset(csv, tmp_path / "images", as_frame=True)
    assert data.image_ids.tolist() == names
    np.testing.assert_allclose(data.target, [0.25, 0.5, 0.1])
    assert data.target.dtype == np.float64
    assert data.data[0] == str(tmp_path / "images" / "ss03 (7805).jpg")
    assert data.split is None
    assert len(data.missing) == 0
    assert list(data.frame.columns) == ["image", "mos", "path"]
    assert data.frame["image"].tolist() == names
    assert "3 images kept" in data.DESCR


def test_csv_semicolon_decimal_comma_and_other_columns(tmp_path):
    _write_images(tmp_path / "img", ["x.jpg", "y.jpg"])
    csv = tmp_path / "koniq-like.csv"
    csv.write_text('"image_name";"c1";"MOS"\n"x.jpg";3;"3,25"\n"y.jpg";1;"1,5"\n')
    data = load_csv_dataset(
        csv, tmp_path / "img", image_col="image_name", score_col="MOS", as_frame=True
    )
    np.testing.assert_allclose(data.target, [3.25, 1.5])
    assert data.frame["c1"].tolist() == ["3", "1"]


def test_csv_quoted_names_with_commas(tmp_path):
    _write_images(tmp_path / "img", ["a, b.jpg", "c.jpg"])
    csv = tmp_path / "labels.csv"
    csv.write_text('image,mos\n"a, b.jpg",2\nc.jpg,3\n')
    data = load_csv_dataset(csv, tmp_path / "img")
    assert data.image_ids.tolist() == ["a, b.jpg", "c.jpg"]


def test_csv_missing_and_case_mismatch_reported(tmp_path):
    image_dir = tmp_path / "images"
    _write_images(image_dir, ["a.jpg", "B.JPG", "c.png", "d.jpg"])
    (image_dir / "e.jpg").write_bytes(b"\x00garbage")
    csv = tmp_path / "labels.csv"
    csv.write_text("image,mos\na.jpg,1\nb.jpg,2\nc.jpg,3\nd.jpg,4\ne.jpg,5\nzz.jpg,6\n")
    with pytest.warns(
        UserWarning, match=r"labels.csv: 4 of 6 images left out"
    ) as record:
        data = load_csv_dataset(csv, image_dir)
    assert "3 file not found" in str(record[0].message)
    assert "1 unreadable image" in str(record[0].message)
    assert data.image_ids.tolist() == ["a.jpg", "d.jpg"]
    np.testing.assert_array_equal(data.target, [1.0, 4.0])
    reasons = dict(zip(data.missing["id"], data.missing["reason"]))
    assert reasons["b.jpg"] == "file not found (did you mean 'B.JPG'?)"
    assert reasons["c.jpg"] == "file not found (did you mean 'c.png'?)"
    assert reasons["zz.jpg"] == "file not found"
    assert reasons["e.jpg"].startswith("unreadable image")
    assert data.missing["path"].iloc[0] == str(image_dir / "b.jpg")

    # Opt-in: a unique case variant is accepted and its on-disk name used.
    with pytest.warns(UserWarning, match="3 of 6 images left out"):
        loose = load_csv_dataset(csv, image_dir, case_insensitive=True)
    assert loose.image_ids.tolist() == ["a.jpg", "b.jpg", "d.jpg"]
    assert loose.data[1] == str(image_dir / "B.JPG")
    with pytest.raises(ValueError, match="needs check_images=True"):
        load_csv_dataset(csv, image_dir, case_insensitive=True, check_images=False)

    # Without checks, every row is returned with its listed path.
    unchecked = load_csv_dataset(csv, image_dir, check_images=False)
    assert len(unchecked.image_ids) == 6 and len(unchecked.missing) == 0


def test_csv_random_split_and_split_column(tmp_path):
    names = [f"{i}.jpg" for i in range(20)]
    _write_images(tmp_path / "img", names)
    csv = tmp_path / "labels.csv"
    folds = ["train" if i % 4 else "test" for i in range(20)]
    csv.write_text(
        "image,mos,fold\n"
        + "".join(f"{n},{i},{f}\n" for i, (n, f) in enumerate(zip(names, folds)))
    )
    data = load_csv_dataset(
        csv, tmp_path / "img", test_size=0.25, random_state=1, as_frame=True
    )
    assert (data.split == "test").sum() == 5 and (data.split == "train").sum() == 15
    np.testing.assert_array_equal(
        load_csv_dataset(csv, tmp_path / "img", test_size=0.25, random_state=1).split,
        data.split,
    )
    assert data.frame["split"].tolist() == data.split.tolist()
    assert (
        load_csv_dataset(csv, tmp_path / "img", test_size=7).split == "test"
    ).sum() == 7
    given = load_csv_dataset(csv, tmp_path / "img", split_col="fold")
    assert given.split.tolist() == folds
    with pytest.raises(ValueError, match="not both"):
        load_csv_dataset(csv, tmp_path / "img", split_col="fold", test_size=0.2)
    with pytest.raises(ValueError, match="test_size must be in"):
        load_csv_dataset(csv, tmp_path / "img", test_size=1.5)


def test_csv_bad_label_files_give_clear_errors(tmp_path):
    image_dir = tmp_path / "img"
    _write_images(image_dir, ["a.jpg", "b.jpg", "c.jpg"])

    def labels(text):
        path = tmp_path / "bad labels.csv"
        path.write_text(text)
        return path

    with pytest.raises(FileNotFoundError, match="label file not found: .*nope.csv"):
        load_csv_dataset(tmp_path / "nope.csv", image_dir)
    with pytest.raises(ValueError, match=r"bad labels.csv.*empty"):
        load_csv_dataset(labels(""), image_dir)
    with pytest.raises(
        ValueError, match=r"bad labels.csv: no column 'mos'.*\['image', 'score'\]"
    ):
        load_csv_dataset(labels("image;score\na.jpg;1\n"), image_dir)
    with pytest.raises(ValueError, match=r"no column 'fold'"):
        load_csv_dataset(labels("image,mos\na.jpg,1\n"), image_dir, split_col="fold")
    with pytest.raises(
        ValueError,
        match=r"bad labels.csv: 2 non-numeric or missing value\(s\) in score column 'mos': "
        r"line 3: image='b.jpg', mos='high'; line 4: image='c.jpg', mos=''",
    ):
        load_csv_dataset(labels("image,mos\na.jpg,1\nb.jpg,high\nc.jpg,\n"), image_dir)
    with pytest.raises(
        ValueError, match=r"appear more than once .*'a.jpg' on lines \[2, 4\]"
    ):
        load_csv_dataset(labels("image,mos\na.jpg,1\nb.jpg,2\na.jpg,3\n"), image_dir)
    with pytest.raises(ValueError, match=r"empty image name.*line 3"):
        load_csv_dataset(labels("image,mos\na.jpg,1\n,2\n"), image_dir)
    # A row with an extra field, and the line count past a blank line.
    with pytest.raises(ValueError, match=r"line 4: 3 fields where the header has 2"):
        load_csv_dataset(labels("image,mos\na.jpg,1\n\nb.jpg,2,x\n"), image_dir)
    with pytest.raises(ValueError, match=r"line 2: 1 fields where the header has 2"):
        load_csv_dataset(labels("image,mos\na.jpg\n"), image_dir)
    with pytest.raises(ValueError, match=r"line 5: image='c.jpg', mos='n/a'"):
        load_csv_dataset(
            labels("image,mos\na.jpg,1\n\nb.jpg,2,\nc.jpg,n/a\n"), image_dir
        )
    with pytest.raises(ValueError, match=r"column 'mos' appears more than once"):
        load_csv_dataset(labels("image,mos,mos\na.jpg,1,2\n"), image_dir)
    with pytest.raises(ValueError, match="header but no rows"):
        load_csv_dataset(labels("image,mos\n"), image_dir)
    with pytest.raises(FileNotFoundError, match="image directory not found"):
        load_csv_dataset(labels("image,mos\na.jpg,1\n"), tmp_path / "nowhere")
    with pytest.raises(ValueError, match="none of the 2 images could be used"):
        load_csv_dataset(labels("image,mos\nq.jpg,1\nr.jpg,2\n"), image_dir)


def test_csv_real_biq2021_labels(biq_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every image is found and readable
        data = load_csv_dataset(
            biq_dir / "labels.csv", biq_dir / "images", test_size=0.2
        )
    assert len(data.image_ids) == 3000 and len(data.missing) == 0
    assert data.target.min() >= 0 and data.target.max() <= 1
    assert any(" (" in name for name in data.image_ids)
    assert (data.split == "test").sum() == 600


# --------------------------------------------------------------------------
# CLIVE
# --------------------------------------------------------------------------


def _write_clive(root, names, mos, std=None, skip_images=()):
    data = root / "Data"
    data.mkdir(parents=True, exist_ok=True)
    cell = np.empty((len(names), 1), dtype=object)  # MATLAB cell array, N x 1
    for i, name in enumerate(names):
        cell[i, 0] = name
    savemat(data / "AllImages_release.mat", {"AllImages_release": cell})
    savemat(
        data / "AllMOS_release.mat", {"AllMOS_release": np.asarray([mos], dtype=float)}
    )
    if std is not None:
        savemat(
            data / "AllStdDev_release.mat",
            {"AllStdDev_release": np.asarray([std], dtype=float)},
        )
    for name in names:
        if name not in skip_images and not name.startswith("t"):
            _bmp(root / "Images" / name)


_CLIVE_NAMES = [f"t{i}.bmp" for i in range(1, 8)] + [
    "3.bmp",
    "10.bmp",
    "22.bmp",
    "5.bmp",
]
_CLIVE_MOS = [50.0] * 7 + [63.5, 20.25, 71.0, 44.0]


def test_clive_drops_training_images_by_name(tmp_path):
    _write_clive(tmp_path, _CLIVE_NAMES, _CLIVE_MOS, std=list(range(11)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_clive(tmp_path, as_frame=True)
    assert data.image_ids.tolist() == ["3.bmp", "10.bmp", "22.bmp", "5.bmp"]
    np.testing.assert_array_equal(data.target, [63.5, 20.25, 71.0, 44.0])
    np.testing.assert_array_equal(data.std, [7, 8, 9, 10])
    assert data.data[1] == str(tmp_path / "Images" / "10.bmp")
    assert list(data.frame.columns) == ["image", "path", "mos", "std"]
    assert "t1.bmp" in data.DESCR and "4 images kept" in data.DESCR


def test_clive_missing_image_reported(tmp_path):
    _write_clive(tmp_path, _CLIVE_NAMES, _CLIVE_MOS, skip_images=("22.bmp",))
    with pytest.warns(
        UserWarning,
        match=r"CLIVE: 1 of 4 images left out \(1 file not found\); "
        r"first: 22.bmp",
    ):
        data = load_clive(tmp_path)
    assert data.image_ids.tolist() == ["3.bmp", "10.bmp", "5.bmp"]
    np.testing.assert_array_equal(data.target, [63.5, 20.25, 44.0])
    assert data.std is None
    assert data.missing["id"].tolist() == ["22.bmp"]


def test_clive_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="AllImages_release.mat"):
        load_clive(tmp_path)
    _write_clive(tmp_path, _CLIVE_NAMES, _CLIVE_MOS[:-1])
    with pytest.raises(
        ValueError, match="lists 11 images but .*AllMOS_release.mat holds 10"
    ):
        load_clive(tmp_path)
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"mos": np.ones((1, 11))})
    with pytest.raises(
        ValueError, match=r"no variable 'AllMOS_release'; it holds \['mos'\]"
    ):
        load_clive(tmp_path)


def test_loaders_return_a_scikit_learn_bunch_with_the_old_names_deprecated(tmp_path):
    image_dir = tmp_path / "images"
    _write_images(image_dir, ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "labels.csv").write_text("image,mos\na.jpg,0.2\nb.jpg,0.9\nc.jpg,0.5\n")
    data = load_csv_dataset(tmp_path / "labels.csv", image_dir, score_range=(0, 1))
    assert data.data.tolist() == [str(image_dir / n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    assert data.image_ids.tolist() == ["a.jpg", "b.jpg", "c.jpg"] and "DESCR" in data
    assert data.score_range == (0.0, 1.0) and data.higher_is_better is True and data.groups is None
    with pytest.warns(FutureWarning, match="'paths' is deprecated.*use 'data'"):
        assert data.paths.tolist() == data.data.tolist()
    with pytest.warns(FutureWarning, match="'ids' is deprecated.*use 'image_ids'"):
        assert data["ids"].tolist() == data.image_ids.tolist()
    with pytest.warns(FutureWarning, match="'paths' is deprecated"):  # dict.get reads the old name too
        assert data.get("paths").tolist() == data.data.tolist()
    assert data.get("no such field", 7) == 7
    X, y = load_csv_dataset(tmp_path / "labels.csv", image_dir, return_X_y=True)
    assert X.tolist() == data.data.tolist() and y.tolist() == [0.2, 0.9, 0.5]
    clive_root = tmp_path / "clive"
    _write_clive(clive_root, ["1.bmp", "2.bmp"], [30.0, 60.0])
    X, y = load_clive(clive_root, return_X_y=True)
    assert len(X) == 2 and y.tolist() == [30.0, 60.0]
    assert load_clive(clive_root).score_range == (0.0, 100.0)
    # With as_frame=True as well, pandas objects as scikit-learn's loaders give: the frame's columns.
    X, y = load_csv_dataset(tmp_path / "labels.csv", image_dir, as_frame=True, return_X_y=True)
    assert isinstance(X, pd.Series) and X.name == "path" and X.tolist() == data.data.tolist()
    assert isinstance(y, pd.Series) and y.name == "mos" and y.tolist() == [0.2, 0.9, 0.5]
    X, y = load_clive(clive_root, as_frame=True, return_X_y=True)
    assert isinstance(X, pd.Series) and isinstance(y, pd.Series) and y.tolist() == [30.0, 60.0]


def test_csv_groups_and_the_direction_of_a_dmos_column(tmp_path):
    (tmp_path / "labels.csv").write_text("image,ref,dmos\na.jpg,r1,10\nb.jpg,r1,40\nc.jpg,r2,25\n")
    with pytest.raises(ValueError, match=r"'dmos' is named like a DMOS.*higher_is_better=False"):
        load_csv_dataset(tmp_path / "labels.csv", tmp_path, score_col="dmos", check_images=False)
    data = load_csv_dataset(tmp_path / "labels.csv", tmp_path, score_col="dmos", group_col="ref",
                            higher_is_better=False, check_images=False, as_frame=True)
    assert data.higher_is_better is False and data.groups.tolist() == ["r1", "r1", "r2"]
    assert data.frame["ref"].tolist() == ["r1", "r1", "r2"]
    with pytest.raises(ValueError, match="no column 'photographer'"):
        load_csv_dataset(tmp_path / "labels.csv", tmp_path, score_col="dmos", group_col="photographer",
                         higher_is_better=False, check_images=False)
