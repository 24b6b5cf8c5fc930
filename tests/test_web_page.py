"""End-to-end: the upload page in headless Chromium (Debian's /usr/bin/chromium via Playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest_server import Server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium not installed (Debian packages chromium and chromium-driver; "
                    "`make test` installs them where it can)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser):  # type: ignore[no-untyped-def]
    """Open pages in their own browser contexts, closed after the test."""
    contexts = []

    def _open(width: int = 1280, height: int = 720):  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.bring_to_front()
        return page

    yield _open
    for context in contexts:
        context.close()


def _upload(page, url: str, scan: Path):  # type: ignore[no-untyped-def]
    """Open the page at ``url``, upload ``scan`` and wait for the result; the page and the
    list that collects its script errors."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.set_input_files("#file-input", str(scan))
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    return page, errors


def _scan(tmp_path: Path) -> Path:
    yy, xx = np.mgrid[:128, :128]
    img = (((yy - 64) ** 2 + (xx - 64) ** 2) < 50 ** 2) * 120 + \
        (((yy - 60) ** 2 + (xx - 80) ** 2) < 12 ** 2) * 120
    path = tmp_path / "scan.png"
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


def test_upload_shows_class_probabilities_and_overlay(open_page, server: Server,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    page = open_page(1100, 900)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    page.goto(server.url)
    assert "not a medical device" in page.inner_text(".disclaimer")
    page.set_input_files("#file-input", str(_scan(tmp_path)))
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    title = page.inner_text("#predicted-class")
    classes = page.locator("#probabilities li .label").all_inner_texts()
    assert sorted(classes) == ["glioma", "meningioma", "pituitary"]
    assert title.split(" (")[0] == classes[0]  # the top bar is the predicted class
    values = [float(v) for v in page.locator("#probabilities .bar").evaluate_all(
        "bars => bars.map(b => b.getAttribute('aria-valuenow'))")]
    assert sum(values) == pytest.approx(100, abs=0.5)
    assert page.get_attribute("#overlay", "data-drawn") == "outline"
    size = page.evaluate("() => [document.getElementById('overlay').width, "
                         "document.getElementById('overlay').height]")
    assert size == [128, 128]
    assert "Tumour area" in page.inner_text("#measurements")
    assert page.get_attribute("#download-mask", "href").startswith("data:image/png;base64,")
    page.check("input[value=filled]")
    assert page.get_attribute("#overlay", "data-drawn") == "filled"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
    assert not errors, errors  # nothing fetched from outside (no CDN), no script errors


def test_classifier_page_shows_class_without_mask_section(open_page,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    from conftest_server import start_server
    from fixtures import save_random_classifier

    live, proc = start_server(tmp_path, model=save_random_classifier(tmp_path / "classifier"))
    try:
        page, errors = _upload(open_page(), live.url, _scan(tmp_path))
        classes = page.locator("#probabilities li .label").all_inner_texts()
        assert sorted(classes) == ["no tumour", "tumour"]
        assert page.is_hidden("#overlay-controls") and page.is_hidden("#download-mask")
        measurements = page.inner_text("#measurements")
        assert "Tumour area" not in measurements and "classifies only" in measurements
        assert page.get_attribute("#overlay", "data-drawn") == "scan"
        assert page.inner_text("#finding") in ("No tumour found.", "") or \
            page.inner_text("#finding").startswith("Tumour found")
        assert not errors, errors
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_unfamiliar_image_shows_the_warning(open_page, server: Server,  # type: ignore[no-untyped-def]
                                            tmp_path: Path) -> None:
    from PIL import ImageDraw

    page_image = Image.new("L", (160, 160), 255)
    draw = ImageDraw.Draw(page_image)
    for i in range(9):
        draw.text((6, 6 + 16 * i), f"Discharge letter, line {i}", fill=0)
    path = tmp_path / "letter.png"
    page_image.save(path)
    page = open_page()
    page.goto(server.url)
    assert page.is_hidden("#ood-warning")
    page.set_input_files("#file-input", str(path))
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    warning = page.inner_text("#ood-warning")
    assert page.is_visible("#ood-warning") and "unlike the training data" in warning
    assert "unreliable" in warning and "bright background" in warning
    assert "unreliable" in page.inner_text("#finding")


def test_rejected_file_message(open_page, server: Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = open_page()
    page.goto(server.url)
    bad = tmp_path / "notes.txt"
    bad.write_text("not a scan")
    page.set_input_files("#file-input", str(bad))
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    text = page.inner_text("#error")
    assert "415" in text and "unsupported file type" in text


def test_keyboard_and_phone_width(open_page, server: Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = open_page(375, 740)
    # Playwright turns file-chooser interception on without waiting for a reply; listening
    # before the page loads (a full round trip) keeps the Enter below from racing it.
    choosers: list = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    page.goto(server.url)
    page.keyboard.press("Tab")  # the drop zone is the first stop
    assert page.evaluate("document.activeElement.id") == "drop-zone"
    page.keyboard.press("Enter")
    for _ in range(100):
        if choosers:
            break
        page.wait_for_timeout(100)
    assert choosers, "Enter on the drop zone did not open the file picker"
    choosers[0].set_files(str(_scan(tmp_path)))
    page.keyboard.press("Tab")  # the slice field
    assert page.evaluate("document.activeElement.id") == "slice-input"
    page.keyboard.press("Tab")  # then the Analyse button
    assert page.evaluate("document.activeElement.id") == "submit"
    page.keyboard.press("Enter")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page-phone.png"), full_page=True)


def test_api_docs_render_offline(open_page, server: Server) -> None:  # type: ignore[no-untyped-def]
    """/docs loads every script from the server itself: nothing from a CDN."""
    page = open_page()
    outside: list[str] = []

    def block(route):  # type: ignore[no-untyped-def]
        outside.append(route.request.url)
        route.abort()

    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        server.url) else block(route))
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "tumorscope" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector('[data-path="/api/v1/predict"]', timeout=30_000)  # rendered
    assert not outside, outside


def test_case_viewer_orthogonal_views_slider_and_toggles(open_page, server: Server,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    from fixtures import write_brats_case

    case = write_brats_case(tmp_path / "P5", "P5", "brats2023")
    files = sorted(str(p) for p in case.glob("P5-t*.nii.gz"))
    assert len(files) == 4
    page = open_page(1100, 1000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.set_input_files("#case-input", files)
    page.click("#case-submit")
    page.wait_for_selector("#case-result:not([hidden])", timeout=120_000)
    assert page.inner_text("#case-id") == "P5"
    for view in ("axial", "coronal", "sagittal"):
        assert page.get_attribute(f"#view-{view}", "data-drawn") == "1,2,3"
    assert "WT volume" in page.inner_text("#case-volumes")
    assert page.get_attribute("#download-seg", "download") == "P5_seg.nii.gz"
    before = page.evaluate("() => document.getElementById('view-axial').toDataURL()")
    slider = page.locator("#slider-axial")
    slider.fill("0" if slider.input_value() != "0" else slider.get_attribute("max"))
    after = page.evaluate("() => document.getElementById('view-axial').toDataURL()")
    assert before != after  # the slider moves through the slices
    page.uncheck("#region-toggles input[value='2']")
    assert page.get_attribute("#view-axial", "data-drawn") == "1,3"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page-case.png"), full_page=True)
    assert not errors, errors


def test_page_names_the_outline_of_a_model_with_several(open_page,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    from conftest_server import start_server
    from fixtures import save_random_model

    model = save_random_model(tmp_path / "outlines", outlines=["figshare", "lgg", "brats"])
    live, proc = start_server(tmp_path, model=model)
    try:
        page, errors = _upload(open_page(), live.url, _scan(tmp_path))
        measurements = page.inner_text("#measurements")
        assert "Outline as annotated in" in measurements and "figshare" in measurements
        assert not errors, errors
    finally:
        proc.terminate()
        proc.wait(timeout=20)
