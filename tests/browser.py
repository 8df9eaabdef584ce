"""A headless Chromium driven over the DevTools protocol (aiohttp's websocket client): evaluate JS, screenshot."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """``async with Browser(url, profile) as b: await b.js("document.title")``."""

    def __init__(self, url: str, profile: Path, width: int = 1280, height: int = 1100) -> None:
        self.url, self.profile, self.size = url, profile, (width, height)
        self.port = free_port()
        self.next_id = 0

    async def __aenter__(self) -> Browser:
        import aiohttp

        self.proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                                      f"--remote-debugging-port={self.port}", f"--user-data-dir={self.profile}",
                                      f"--window-size={self.size[0]},{self.size[1]}", self.url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.http = aiohttp.ClientSession()
        deadline = time.time() + 30
        while True:
            try:
                async with self.http.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                    pages = [t for t in await r.json() if t["type"] == "page"]
                if pages:
                    break
            except aiohttp.ClientError:
                pass
            if time.time() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
            await asyncio.sleep(0.2)
        self.ws = await self.http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                        deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.ws.close()
        await self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]

    async def js(self, expression: str) -> Any:
        out = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(out["exceptionDetails"])
        return out["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.3)
        raise TimeoutError(f"waited {timeout}s for {expression}")

    async def screenshot(self, path: Path) -> None:
        out = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(out["data"]))
