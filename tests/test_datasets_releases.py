"""The KonIQ-10k, SPAQ, KADID-10k and PaQ-2-PiQ loaders on tiny copies of their releases.

Each test writes a few images and a label file in the release's own format
(file name, folder layout, column names and order) into tmp_path.
"""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sklearn_mlsp.datasets import load_kadid10k, load_koniq10k, load_paq2piq, load_spaq


def _write_images(folder, names):
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), (10 * i, 20, 30)).save(path)


KONIQ_HEADER = "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore"
KONIQ_ROWS = [
    "10004473376.jpg,0,1,30,67,2,100,3.7,0.52,77.38",
    "10007357496.jpg,0,3,58,40,0,101,3.37,0.55,68.06",
    "10007903636.jpg,1,0,26,72,1,100,3.73,0.53,78.97",
]


def test_koniq10k_reads_scores_and_distributions(tmp_path):
    _write_images(tmp_path / "1024x768", ["10004473376.jpg", "10007357496.jpg", "10007903636.jpg"])
    (tmp_path / "koniq10k_scores_and_distributions.csv").write_text(
        "\n".join([KONIQ_HEADER, *KONIQ_ROWS]) + "\n"
    )
    data = load_koniq10k(tmp_path, as_frame=True)
    assert data.image_ids.tolist() == ["10004473376.jpg", "10007357496.jpg", "10007903636.jpg"]
    np.testing.assert_allclose(data.target, [3.7, 3.37, 3.73])
    np.testing.assert_allclose(data.std, [0.52, 0.55, 0.53])
    np.testing.assert_allclose(data.mos_zscore, [77.38, 68.06, 78.97])
    np.testing.assert_array_equal(data.n_votes, [100, 101, 100])
    np.testing.assert_allclose(data.distribution[1], np.array([0, 3, 58, 40, 0]) / 101)
    assert data.split is None and len(data.missing) == 0
    assert data.data[0] == str(tmp_path / "1024x768" / "10004473376.jpg")
    assert list(data.frame.columns[:3]) == ["image", "path", "mos"]
    assert "distribution_5" in data.frame.columns
    assert "KonIQ-10k" in data.DESCR and "3 images kept" in data.DESCR


def test_koniq10k_sets_file_gives_the_split_and_missing_images_are_reported(tmp_path):
    _write_images(tmp_path / "1024x768", ["10004473376.jpg", "10007903636.jpg"])
    sets = ["training", "validation", "test"]
    (tmp_path / "koniq10k_distributions_sets.csv").write_text(
        "\n".join([KONIQ_HEADER + ",set", *(r + f",{s}" for r, s in zip(KONIQ_ROWS, sets))]) + "\n"
    )
    with pytest.warns(UserWarning, match=r"KonIQ-10k: 1 of 3 images left out \(1 file not found\)"):
        data = load_koniq10k(tmp_path)
    assert data.split.tolist() == ["training", "test"]
    assert data.missing["id"].tolist() == ["10007357496.jpg"]


def test_spaq_reads_the_csv_export_of_the_annotation_sheet(tmp_path):
    _write_images(tmp_path / "TestImage", ["00001.jpg", "00002.jpg"])
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "MOS and Image attribute scores.csv").write_text(
        "Image name,MOS,Brightness,Colorfulness,Contrast,Noisiness,Sharpness\n"
        "00001.jpg,42.8,43.6,39.2,45.0,48.4,45.8\n"
        "00002.jpg,51.75,52.0,47.4,50.2,53.6,56.2\n"
    )
    data = load_spaq(tmp_path, as_frame=True)
    np.testing.assert_allclose(data.target, [42.8, 51.75])
    np.testing.assert_allclose(data.sharpness, [45.8, 56.2])
    np.testing.assert_allclose(data.brightness, [43.6, 52.0])
    assert data.split is None
    assert list(data.frame.columns) == [
        "image", "path", "mos", "brightness", "colorfulness", "contrast", "noisiness", "sharpness"
    ]


def test_spaq_reads_the_original_xlsx(tmp_path):
    pytest.importorskip("openpyxl")
    _write_images(tmp_path / "TestImage", ["00001.jpg", "00002.jpg"])
    (tmp_path / "Annotations").mkdir()
    pd.DataFrame(
        {"Image name": ["00001.jpg", "00002.jpg"], "MOS": [42.8, 51.75], "Brightness": [43.6, 52.0],
         "Colorfulness": [39.2, 47.4], "Contrast": [45.0, 50.2], "Noisiness": [48.4, 53.6],
         "Sharpness": [45.8, 56.2]}
    ).to_excel(tmp_path / "Annotations" / "MOS and Image attribute scores.xlsx", index=False)
    data = load_spaq(tmp_path)
    np.testing.assert_allclose(data.target, [42.8, 51.75])


def test_kadid10k_reads_dmos_csv_with_references(tmp_path):
    names = ["I01_01_01.png", "I01_01_02.png", "I02_03_05.png"]
    _write_images(tmp_path / "images", names + ["I01.png", "I02.png"])
    (tmp_path / "dmos.csv").write_text(
        "dist_img,ref_img,dmos,var\n"
        "I01_01_01.png,I01.png,4.57,0.496\n"
        "I01_01_02.png,I01.png,4.33,0.869\n"
        "I02_03_05.png,I02.png,1.73,0.562\n"
    )
    data = load_kadid10k(tmp_path, as_frame=True)
    assert data.image_ids.tolist() == names
    np.testing.assert_allclose(data.target, [4.57, 4.33, 1.73])
    np.testing.assert_allclose(data.var, [0.496, 0.869, 0.562])
    assert data.reference.tolist() == ["I01.png", "I01.png", "I02.png"]
    assert data.frame["reference"].tolist() == ["I01.png", "I01.png", "I02.png"]
    # Groups by reference content for GroupKFold; the scale and its direction despite the column's name.
    assert data.groups.tolist() == ["I01.png", "I01.png", "I02.png"]
    assert data.score_range == (1.0, 5.0) and data.higher_is_better is True


def test_release_loaders_record_the_scale_and_return_x_y(tmp_path):
    (tmp_path / "labels_image.csv").write_text("name_image,mos_image,set\na.jpg,50.5,train\nb.jpg,20,test\n")
    data = load_paq2piq(tmp_path, check_images=False)
    assert data.score_range == (0.0, 100.0) and data.higher_is_better and data.groups is None
    assert data.split.tolist() == ["train", "test"]  # the official split
    paths, target = load_paq2piq(tmp_path, check_images=False, return_X_y=True)
    assert paths.tolist() == data.data.tolist() and target.tolist() == [50.5, 20.0]


def test_paq2piq_reads_labels_image_with_subfolders_and_set(tmp_path):
    names = ["AVA__149.jpg", "voc_emotic_ava/2008_000007.jpg", "blur_dataset/motion0012.jpg"]
    _write_images(tmp_path, names)
    (tmp_path / "labels_image.csv").write_text(
        "name_image,mos_image,set\n"
        f"{names[0]},56.82,train\n{names[1]},71.1,validation\n{names[2]},22.4,test\n"
    )
    data = load_paq2piq(tmp_path)
    assert data.image_ids.tolist() == names
    np.testing.assert_allclose(data.target, [56.82, 71.1, 22.4])
    assert data.split.tolist() == ["train", "validation", "test"]
    assert data.data[1] == str(tmp_path / "voc_emotic_ava" / "2008_000007.jpg")


def test_paq2piq_accepts_the_name_mos_variant(tmp_path):
    _write_images(tmp_path / "database", ["a.jpg"])
    (tmp_path / "labels_image.csv").write_text("name,mos\na.jpg,50.5\n")
    data = load_paq2piq(tmp_path, image_dir=tmp_path / "database")
    assert data.target.tolist() == [50.5] and data.split is None


def test_release_loaders_name_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="KonIQ-10k: label file not found"):
        load_koniq10k(tmp_path)
    (tmp_path / "dmos.csv").write_text("image,score\na.png,1\n")
    with pytest.raises(ValueError, match=r"KADID-10k: .*dmos.csv has no image name column \(looked for 'dist_img'\)"):
        load_kadid10k(tmp_path, check_images=False)
    (tmp_path / "dmos.csv").write_text("dist_img,ref_img,dmos,var\na.png,r.png,high,0.1\n")
    with pytest.raises(ValueError, match="non-numeric or missing value"):
        load_kadid10k(tmp_path, check_images=False)
    (tmp_path / "dmos.csv").write_text("dist_img,ref_img,dmos,var\na.png,r.png,3.5,0.1\n")
    with pytest.raises(FileNotFoundError, match="image directory not found"):
        load_kadid10k(tmp_path)
    assert load_kadid10k(tmp_path, check_images=False).image_ids.tolist() == ["a.png"]
