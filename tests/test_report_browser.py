"""report.html in a real browser: headless Chromium (the distribution's package) driven by Selenium.

Opens the report of a small fabricated study (or the report named by LSSAT_BROWSER_REPORT, e.g. the
quick benchmark's: ``lssat bench quick -o /tmp/q && LSSAT_BROWSER_REPORT=/tmp/q/report.html pytest
tests/test_report_browser.py``) and checks that every image loads, every link resolves (an anchor of the
page or an existing file), a table sorts on a click, the page logs no console error, and at 700 px the
page itself never scrolls sideways. Skipped, with how to get a browser, where none is installed; .ci/run
installs one and sets LSSAT_REQUIRE_BROWSER=1, which turns the skip into a failure. tests/test_bench_e2e.py
runs the same checks (`check_report`, `check_narrow`) on the report of the quick benchmark it trains.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

HOW = ("no headless Chromium with its driver: install the distribution's packages (Debian/Ubuntu: "
       "apt-get install chromium chromium-driver) and Selenium (pip install -e '.[test]')")


def _unavailable(reason: str) -> None:
    if os.environ.get("LSSAT_REQUIRE_BROWSER"):
        pytest.fail(f"LSSAT_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason)


def browser_available() -> bool:
    """Whether Selenium, Chromium and its driver are installed (or LSSAT_REQUIRE_BROWSER demands them)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return bool(os.environ.get("LSSAT_REQUIRE_BROWSER"))
    found = any(map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))) and shutil.which("chromedriver")
    return bool(found or os.environ.get("LSSAT_REQUIRE_BROWSER"))


def start_browser():
    """A headless Chromium driven by Selenium; skips (fails under LSSAT_REQUIRE_BROWSER) without one."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable(HOW)
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        _unavailable(HOW)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or a driver
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    except Exception as err:  # a browser that does not start is the same as none, said with its error
        _unavailable(f"{HOW} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
    finally:
        if offline is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = offline
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    given = os.environ.get("LSSAT_BROWSER_REPORT")
    if given:
        return Path(given).resolve()
    from test_bench_report import fake_train, spec_dict

    from lssat.bench.report import write_report
    from lssat.bench.runner import run_benchmark
    from lssat.bench.spec import load_spec

    out = tmp_path_factory.mktemp("browser-bench")
    spec = spec_dict(seeds=(0, 1), tasks=("deepfake",), backbones=("small", "big"))  # 12 cells
    run_benchmark(load_spec(spec), out, train_fn=fake_train, progress=False, write_report=False)
    write_report(out, pictures=False)
    return out / "report.html"


def _open(browser, report: Path, width: int) -> None:
    browser.get_log("browser")  # an empty console before the page loads
    browser.set_window_size(width, 900)
    browser.get(report.as_uri())


def test_report_in_chromium(browser, report):
    check_report(browser, report)


def test_report_fits_700_px(browser, report):
    check_narrow(browser, report)


def check_report(browser, report: Path) -> None:
    """Images load, links resolve, a main-table number leads to its cell row, the cells table sorts,
    no console error (at 1280 px)."""
    _open(browser, report, 1280)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0]);")
    assert images and all(ok for _, ok in images), [alt for alt, ok in images if not ok]

    links = browser.execute_script("return Array.from(document.links).map(a => a.getAttribute('href'));")
    ids = set(browser.execute_script("return Array.from(document.querySelectorAll('[id]')).map(e => e.id);"))
    assert any(h.startswith("#cells-") for h in links) and any(h.startswith("runs/") for h in links)
    for href in links:
        if href.startswith("#"):
            assert href[1:] in ids, f"anchor {href} has no target"
        else:
            target = urlparse(href)
            assert not target.scheme and not target.netloc, f"{href}: the report links outside its folder"
            assert (report.parent / unquote(target.path)).exists(), f"{href}: no such file"
    # following a number of the main table lands on its cells' row
    first = browser.execute_script("return document.querySelector('#table-main td a').getAttribute('href');")
    browser.execute_script("document.querySelector('#table-main td a').click();")
    assert browser.execute_script("return location.hash;") == first
    assert browser.execute_script(f"return document.getElementById('{first[1:]}').closest('tr') !== null;")

    # a table sorts: the cells table by its test headline, both ways
    column = browser.execute_script("""
        const heads = Array.from(document.querySelectorAll('#table-cells thead th'));
        return heads.findIndex(h => h.textContent.trim() === 'test headline');""")
    assert column > 0

    def values() -> list[float | None]:
        return browser.execute_script(f"""
            return Array.from(document.querySelectorAll('#table-cells tbody tr'))
                .map(r => parseFloat(r.cells[{column}].textContent)).map(v => isNaN(v) ? null : v);""")

    def numbers() -> list[float]:  # rows without a number (a failed cell's error, "–") are left out
        return [v for v in values() if v is not None]

    before = numbers()
    assert len(before) >= 2
    head = browser.find_elements("css selector", "#table-cells thead th")[column]
    head.click()
    assert numbers() == sorted(before) and head.get_attribute("aria-sort") == "ascending"
    head.click()
    assert numbers() == sorted(before, reverse=True) and head.get_attribute("aria-sort") == "descending"
    assert sorted(before) != before or sorted(before, reverse=True) != before  # the order did change

    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors


def check_narrow(browser, report: Path) -> None:
    """At 700 px the page does not scroll sideways: wide tables scroll in their own box."""
    _open(browser, report, 700)
    page = browser.execute_script("return [document.documentElement.scrollWidth, "
                                  "document.documentElement.clientWidth];")
    assert page[0] <= page[1], f"the page scrolls sideways at 700 px ({page[0]} > {page[1]})"
    boxes = browser.execute_script("""return Array.from(document.querySelectorAll('.tablebox'))
        .map(b => [b.id, b.scrollWidth > b.clientWidth, getComputedStyle(b).overflowX]);""")
    assert all(overflow == "auto" for _, _, overflow in boxes)
    assert any(wide for _, wide, _ in boxes)  # wide tables scroll inside their own box
    assert browser.execute_script("return Array.from(document.images).every(i => i.clientWidth <= "
                                  "document.documentElement.clientWidth);")
    assert not [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
