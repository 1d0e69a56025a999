"""The HTML report: its static content, and the page at work in headless Chromium."""

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import Chromium, find_browser
from helpers import write_images

from sklearn_mlsp.report import write_report


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    paths = write_images(folder / "photos", 7)
    broken = folder / "photos" / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    rng = np.random.default_rng(0)
    scores = rng.permutation(np.linspace(0.2, 0.8, 7))
    frame = pd.DataFrame({"path": [*paths, str(broken)], "score": [*scores, np.nan],
                          "low": [*(scores - 0.1), np.nan], "high": [*(scores + 0.1), np.nan],
                          "error": [""] * 7 + [f"{broken}: cannot identify image file"]})
    maps = [rng.uniform(size=(3, 3)) for _ in paths] + [None]
    groups = np.arange(8)
    best, _, third = np.argsort(-scores)[:3]
    groups[third] = groups[best]  # the third best is a near-duplicate of the best
    out = write_report(folder / "report.html", frame, maps, title="Test photos", notes="model test, 0-1",
                       groups=groups)
    return out, frame, third


def test_report_is_one_static_page_with_thumbnails_beside_it(report):
    out, frame, _ = report
    page = out.read_text(encoding="utf-8")
    assert page.count('<figure class="photo"') == 7 and page.count('class="photo failed"') == 1
    assert page.count('loading="lazy"') == 7
    assert "cannot identify image file" in page
    # Nothing to fetch: no URLs but the thumbnails beside it and embedded data.
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith(("report_files/", "data:image/png;base64,")) for s in sources)
    assert "http://" not in page and "https://" not in page
    thumbs = sorted((out.parent / "report_files").iterdir())
    assert len(thumbs) == 7 and all(t.stat().st_size > 0 for t in thumbs)
    ranked = [float(s) for s in re.findall(r'data-score="([^"]+)"', page)]
    assert ranked == sorted(frame["score"].dropna(), reverse=True)


def test_report_rejects_misaligned_maps(tmp_path):
    frame = pd.DataFrame({"path": ["a.png", "b.png"], "score": [0.1, 0.2]})
    with pytest.raises(ValueError, match="one entry per row of frame"):
        write_report(tmp_path / "r.html", frame, maps=[None])


BROWSER = find_browser()


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (Debian: apt-get install chromium; .ci/run does)")
def test_report_works_in_a_browser(report, tmp_path):
    out, frame, third = report
    scores = np.sort(frame["score"].dropna().to_numpy())[::-1]
    ranked = frame.dropna(subset=["score"]).sort_values("score", ascending=False)["path"].tolist()
    with Chromium(BROWSER) as browser:
        browser.open(out.resolve().as_uri())
        shot = tmp_path / "report.png"
        browser.screenshot(shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

        shown = browser.evaluate("[...document.querySelectorAll('figure.photo')].map(p => p.dataset.score ?? null)")
        assert [float(s) for s in shown[:-1]] == list(scores) and shown[-1] is None  # failed last
        count = "+document.getElementById('kept-count').textContent"
        # The slider starts at the lowest score: all kept but the near-duplicate of the best.
        assert browser.evaluate(count) == 6

        def slide(value):
            browser.evaluate(f"(() => {{ const s = document.getElementById('threshold'); s.value = {value};"
                             " s.dispatchEvent(new Event('input')); })()")
            return browser.evaluate(count)

        assert slide((scores[3] + scores[4]) / 2) == 3  # the best four, less the duplicate
        assert browser.evaluate("document.querySelectorAll('figure.photo.rejected').length") == 4
        assert slide((scores[0] + scores[1]) / 2) == 1
        assert slide(scores[-1]) == 6

        browser.evaluate("(() => { const k = document.getElementById('keep-top'); k.value = 3;"
                         " k.dispatchEvent(new Event('input')); })()")
        assert browser.evaluate(count) == 3

        display = "getComputedStyle(document.querySelector('img.map')).display"
        assert browser.evaluate(display) != "none"
        browser.evaluate("document.getElementById('show-maps').click()")
        assert browser.evaluate(display) == "none"
        browser.evaluate("document.getElementById('show-maps').click()")
        assert browser.evaluate(display) != "none"

        # Save kept.txt: the three best photos' paths, best first, without the near-duplicate.
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        browser.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        browser.evaluate("document.getElementById('export').click()")
        kept = downloads / "kept.txt"
        deadline = time.monotonic() + 10
        while not kept.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kept.read_text().splitlines() == [ranked[0], ranked[1], ranked[3]]
        assert ranked[2] == frame["path"][third]
    assert Path(out).exists()
