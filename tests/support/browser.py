"""A real headless Chromium (Debian's ``chromium`` package) driven over the Chrome DevTools protocol.

No WebDriver layer and no new dependency: Chromium is started with ``--remote-debugging-port`` and driven through
one WebSocket (``websockets``, already locked). Typing and clicking go through ``Input.*`` (real key and mouse
events, as a person's), reading the page through ``Runtime.evaluate``. When Chromium is missing or cannot be
started, ``Browser.start`` raises an ``AssertionError`` saying why: the browser tests fail, never skip.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.support.procs import free_port

CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "chromium")
INSTALL = "apt-get install -y chromium chromium-driver"


def chromium_path(candidates: tuple[str, ...] = CANDIDATES) -> str:
    for c in candidates:
        found = shutil.which(c) if "/" not in c else (c if os.access(c, os.X_OK) else None)
        if found:
            return found
    raise AssertionError(f"Chromium is not installed (looked for {', '.join(candidates)}): run `{INSTALL}`")


class Browser:
    """One headless Chromium with one page; ``close()`` ends it (its whole process group)."""

    def __init__(self, workdir: Path, width: int = 1280, height: int = 900) -> None:
        self.workdir = workdir
        self.size = (width, height)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._exits = contextlib.ExitStack()

    def start(self, timeout: float = 60.0) -> Browser:
        try:
            return self._start(timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, timeout: float) -> Browser:
        exe = chromium_path()
        port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "chromium.log").open("wb")
        args = [
            exe,
            "--headless=new",
            "--no-sandbox",  # tests run as root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-extensions",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={self.workdir / 'profile'}",
            f"--window-size={self.size[0]},{self.size[1]}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()  # the child has its own descriptor
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.workdir / "chromium.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"Chromium exited with {self.proc.returncode} at start:\n{tail}")
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    url = pages[0]["webSocketDebuggerUrl"]
                    self.ws = self._exits.enter_context(connect(url, max_size=None, open_timeout=10))
                    self.call("Page.enable")
                    self.call("Runtime.enable")
                    return self
                last = targets
            except (httpx.HTTPError, ValueError, OSError) as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"Chromium's DevTools endpoint did not answer within {timeout}s (last: {last!r})")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None, "browser not started"
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result

    def eval(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def goto(self, url: str, timeout: float = 30.0) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(0.1)
        self.wait_for("document.readyState === 'complete'", timeout, f"{url} to load")

    def url(self) -> str:
        return str(self.eval("location.href"))

    def wait_for(self, expression: str, timeout: float, what: str, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = self.eval(expression)
            except AssertionError as exc:  # the page is navigating: its context is gone for a moment
                last = exc
            else:
                if last:
                    return last
            time.sleep(interval)
        raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")

    def wait_element(self, selector: str, timeout: float = 10.0) -> None:
        """Wait until ``selector`` is on a fully loaded page, as a person waits for the field they want: after a
        navigation (a sign-in's redirect), ``location`` already names the new page while its document is still
        loading, and the element is not there yet (a race that failed CI once)."""
        self.wait_for(
            f"document.readyState === 'complete' && document.querySelector({json.dumps(selector)}) !== null",
            timeout,
            f"element {selector}",
        )

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        self.wait_element(selector)
        box = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        assert box, f"no element {selector} to click"
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Focus the field and type into it (the page sees key input, as from a person)."""
        self.wait_element(selector)
        assert self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.focus(); return true; })()"
        ), f"no field {selector}"
        self.call("Input.insertText", text=text)

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                **({"text": "\r"} if kind == "keyDown" else {}),
            )

    def text(self, selector: str) -> str:
        return str(self.eval(f"document.querySelector({json.dumps(selector)})?.innerText ?? ''"))

    def cookies(self) -> list[dict[str, Any]]:
        cookies: list[dict[str, Any]] = self.call("Network.getAllCookies")["cookies"]
        return cookies

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    def set_dark(self, dark: bool) -> None:
        value = "dark" if dark else "light"
        self.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": value}])

    def close(self) -> None:
        self.ws = None
        with contextlib.suppress(OSError):
            self._exits.close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
