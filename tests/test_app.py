"""``t2igan app``: the page's session (placing parts and box corners, completion with G_k, the
wrong kinds of checkpoint) and the page itself in a real headless browser (Debian's Chromium
driven by Playwright)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image

from t2igan.data.contract import CUB_PARTS

from .test_gawwn_keypoints import ckpts  # noqa: F401  (the tiny checkpoints, module-scoped)

app = pytest.importorskip("t2igan.cli.app", reason="the app extra (Gradio) is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_session_places_moves_and_completes_keypoints(ckpts):  # noqa: F811
    s = app.Session(str(ckpts["image"]), str(ckpts["kg"]))
    w = s.place(s.empty(), 0.7, 0.3, "beak")
    w = s.place(w, 0.75, 0.35, "beak")  # moved, not added
    w = s.place(w, 0.2, 0.6, "tail")
    kp = torch.tensor(w["keypoints"])
    assert w["keypoints"][CUB_PARTS.index("beak")] == [0.75, 0.35, 1.0]
    assert int((kp[:, 2] > 0).sum()) == 2
    done = s.complete(w, "a red bird", 0)
    got = torch.tensor(done["keypoints"])
    assert torch.equal(got[CUB_PARTS.index("beak")], torch.tensor([0.75, 0.35, 1.0]))  # kept
    assert set(got[:, 2].tolist()) <= {0.0, 1.0}  # drawn parts: visible (> 0.5) or not
    image = s.samples(done, "a red bird", 0)
    assert image.width > image.height  # 4 samples in a row, then them with the keypoints
    assert torch.equal(torch.tensor(s.remove(w, "tail")["keypoints"])[CUB_PARTS.index("tail")],
                       torch.zeros(3))  # fmt: skip
    dragged, said = s.drag(w, (0.73, 0.33), (0.4, 0.5))  # pressed near the beak's dot
    assert dragged["keypoints"][CUB_PARTS.index("beak")] == [0.4, 0.5, 1.0]
    assert dragged["keypoints"][CUB_PARTS.index("tail")] == [0.2, 0.6, 1.0] and "beak" in said
    with pytest.raises(ValueError, match="no placed part where the drag started"):
        s.drag(w, (0.5, 0.9), (0.4, 0.5))
    with pytest.raises(ValueError, match="choose a part first"):
        s.place(w, 0.5, 0.5, None)
    with pytest.raises(ValueError, match="type a caption first"):
        s.samples(w, "  ", 0)


def test_session_box_corners_and_wrong_kinds(ckpts):  # noqa: F811
    s = app.Session(str(ckpts["box"]))
    w = s.place(s.empty(), 0.6, 0.7, None)  # first corner
    assert w["corner"] == [0.6, 0.7]
    w = s.place(w, 0.2, 0.1, None)  # the opposite corner closes the box
    assert w["corner"] is None and w["boxes"] == pytest.approx([0.2, 0.1, 0.4, 0.6])
    assert s.samples(w, "a blue bird", 1).width > 0
    dragged, said = s.drag(w, (0.9, 0.8), (0.3, 0.2))  # a drag draws the box corner to corner
    assert dragged["boxes"] == pytest.approx([0.3, 0.2, 0.6, 0.6]) and "box" in said
    with pytest.raises(ValueError, match="no area"):
        s.drag(w, (0.5, 0.5), (0.51, 0.7))
    with pytest.raises(ValueError, match="no keypoint generator"):
        app.Session(str(ckpts["image"])).complete(s.empty(), "x", 0)
    with pytest.raises(ValueError, match="is a GAWWN keypoint generator"):
        app.Session(str(ckpts["kg"]))
    with pytest.raises(ValueError, match="draws keypoints for a keypoint model"):
        app.Session(str(ckpts["box"]), str(ckpts["kg"]))
    with pytest.raises(ValueError, match="not a GAWWNKeypointGenerator"):
        app.Session(str(ckpts["image"]), str(ckpts["image"]))


def test_app_command_errors_are_one_line(ckpts, capsys):  # noqa: F811
    from t2igan.cli import main

    with pytest.raises(SystemExit):
        main(["app", "--ckpt", str(ckpts["kg"])])
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("t2igan app: ") and "--keypoint-generator" in err[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_page_in_a_headless_browser(ckpts, tmp_path):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    session = app.Session(str(ckpts["image"]), str(ckpts["kg"]))
    page, url = app.serve(session, port=_free_port(), block=False)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"])  # fmt: skip
            tab = browser.new_page(viewport={"width": 1200, "height": 900})
            tab.goto(url)
            caption = tab.locator("#caption textarea, #caption input").first
            caption.wait_for(timeout=60_000)
            caption.fill("a small bird with a red body and a blue head")
            caption.press("Enter")
            tab.locator("#part label", has_text="beak").first.click()
            canvas = tab.locator("#canvas img").first
            canvas.wait_for(timeout=60_000)
            box = canvas.bounding_box()
            canvas.click(position={"x": 0.7 * box["width"], "y": 0.3 * box["height"]})
            samples = tab.locator("#samples img").first
            samples.wait_for(timeout=60_000)
            assert "noise seed 0" in tab.locator("#status").inner_text()
            shot = tmp_path / "samples.png"
            samples.screenshot(path=str(shot))
            assert Image.open(shot).width > 100  # an image appeared
            tab.mouse.move(box["x"] + 0.7 * box["width"], box["y"] + 0.3 * box["height"])
            tab.mouse.down()  # drag the beak's dot to (0.4, 0.5)
            tab.mouse.move(box["x"] + 0.55 * box["width"], box["y"] + 0.4 * box["height"], steps=5)
            tab.mouse.move(box["x"] + 0.4 * box["width"], box["y"] + 0.5 * box["height"], steps=5)
            tab.mouse.up()
            tab.locator("#status", has_text="moved beak to (0.40, 0.50)").wait_for(timeout=60_000)
            tab.wait_for_timeout(500)  # the click after the drag placed nothing
            assert "moved beak" in tab.locator("#status").inner_text()
            tab.locator("#complete").click()  # G_k draws the other parts
            tab.wait_for_timeout(2000)
            assert "noise seed 0" in tab.locator("#status").inner_text()
            tab.locator("#resample").click()
            tab.locator("#status", has_text="noise seed 1").wait_for(timeout=60_000)
            tab.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            browser.close()
    finally:
        page.close()
    assert Path(tmp_path / "page.png").stat().st_size > 10_000
