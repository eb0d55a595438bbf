"""End-to-end browser test of `asl_resnet serve`: Debian's Chromium, driven through WebDriver
(selenium), opens the page on a phone-sized window, uploads an image through the file picker and
must show the letter `asl_resnet predict` gives, three probability bars and the timing.

    python serve_browser.py ASL_RESNET MODEL_DIR IMAGE [SCREENSHOT.png]

Exits 77 (reported as skipped by CTest, with the reason printed) where Chromium, its driver or
selenium is not installed; scripts/bootstrap.sh installs them where it can."""
import json
import shutil
import subprocess
import sys

from serve_support import start_server

BIN, MODEL, IMAGE = sys.argv[1:4]
SCREENSHOT = sys.argv[4] if len(sys.argv) > 4 else None

chromium = shutil.which("chromium")
driver_path = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None
missing = [name for name, found in (("chromium", chromium), ("chromedriver", driver_path),
                                    ("selenium", webdriver)) if not found]
if missing:
    print(f"SKIPPED: the browser test needs {', '.join(missing)} (scripts/bootstrap.sh installs "
          "them where Debian's chromium and PyPI's selenium can be installed)")
    sys.exit(77)

expected = json.loads(subprocess.run([BIN, "predict", "--model", MODEL, "--json", IMAGE],
                                     capture_output=True, check=True, text=True).stdout)[0]["top"]
server, url = start_server(BIN, MODEL)
options = webdriver.ChromeOptions()
options.binary_location = chromium
# Without the background-networking flags Chromium floods a closed network with connections.
for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--window-size=420,900"):
    options.add_argument(flag)
browser = webdriver.Chrome(service=Service(driver_path), options=options)
try:
    browser.get(url + "/")
    assert "American Sign Language" in browser.title + browser.page_source
    browser.find_element(By.ID, "file").send_keys(IMAGE)
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "answer").text.strip())
    shown = browser.find_element(By.ID, "answer").text.strip()
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#bars .label")]
    status = browser.find_element(By.ID, "status").text
    print(f"page shows {shown!r}, bars {labels}, status {status!r}; predict says {expected[0]['label']!r}")
    assert shown == expected[0]["label"], (shown, expected)
    assert labels == [t["label"] for t in expected], labels
    assert status.startswith("predicted in ") and status.endswith(" ms"), status
    assert browser.find_element(By.ID, "preview").is_displayed()
    if SCREENSHOT:
        browser.save_screenshot(SCREENSHOT)
finally:
    browser.quit()
    server.terminate()
    server.wait(timeout=20)
print("serve browser: ok")
