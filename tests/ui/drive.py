#!/usr/bin/env python3
"""Drives fogd's status page in a real headless Chromium over the DevTools protocol (aiohttp's
websocket client, already in the test venv): loads the page with the admin's credentials, reads
what the DOM shows, takes a screenshot of each view, opens a job's log, checks that the page
updates by itself after `--trigger` runs (a new frame published over MQTT), and lists every image
the browser received with its SHA-256, so the test can check that none is a raw frame.

Prints one JSON document on stdout; everything else goes to stderr. Bounded: 120 s in all.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import aiohttp


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH (scripts/setup installs Debian's)")


class Cdp:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.waiting = {}
        self.events = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.waiting:
                self.waiting.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append(data)

    async def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = fut
        await self.ws.send_str(json.dumps(msg))
        data = await asyncio.wait_for(fut, 30)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data.get("result", {})


class Page:
    def __init__(self, cdp, session):
        self.cdp, self.session = cdp, session

    async def send(self, method, params=None):
        return await self.cdp.send(method, params, self.session)

    async def eval(self, expr):
        r = await self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr[:60]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def until(self, expr, secs=20):
        t0 = time.monotonic()
        while time.monotonic() - t0 < secs:
            if await self.eval(expr):
                return time.monotonic() - t0
            await asyncio.sleep(0.1)
        raise RuntimeError(f"timed out after {secs} s waiting for: {expr}")

    async def screenshot(self, path):
        r = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path


# What the page shows, read from the DOM (not from the JSON it fetched).
READ_DOM = """(() => {
  const cams = [...document.querySelectorAll('#cameras [data-camera]')].map(c => {
    const img = c.querySelector('img');
    return {camera: c.dataset.camera,
      frames: +c.querySelector('.frames').textContent,
      faces: c.querySelector('.faces').textContent, masked: c.querySelector('.masked').textContent,
      unmasked: c.querySelector('.unmasked').textContent, share: c.querySelector('.share').textContent,
      verdict: c.querySelector('.verdict').dataset.verdict,
      img: img.getAttribute('src'), img_loaded: img.complete && img.naturalWidth > 0,
      chart_lines: c.querySelectorAll('.chart polyline').length};
  });
  const services = {};
  document.querySelectorAll('#services tbody tr').forEach(tr => {
    services[tr.dataset.service] = {};
    tr.querySelectorAll('[data-state]').forEach(td => { services[tr.dataset.service][td.dataset.state] = +td.textContent; });
  });
  return {cameras: cams, services, jobs: document.querySelectorAll('#jobs tbody tr').length,
    outbox: {backlog: +document.querySelector('#outbox-backlog').textContent,
             uploaded: +document.querySelector('#outbox-uploaded').textContent,
             waiting: [...document.querySelectorAll('#waiting tbody tr')].map(tr => [...tr.cells].map(td => td.textContent)),
             stores: [...document.querySelectorAll('#stores tbody tr')].map(tr => [...tr.cells].map(td => td.textContent))},
    problems: document.querySelector('#problems').hidden ? '' : document.querySelector('#problems').textContent,
    health: document.querySelector('#health').textContent,
    refreshes: +document.body.dataset.refreshes};
})()"""


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--user", default="oscar")
    ap.add_argument("--password", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--camera", required=True)
    ap.add_argument("--trigger", required=True, help="shell command that makes the camera send a frame")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="fogd-ui-")
    browser = subprocess.Popen(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        t0 = time.monotonic()
        while not os.path.exists(port_file):
            if time.monotonic() - t0 > 30:
                sys.exit("chromium did not start in 30 s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        port, path = open(port_file).read().split()[:2]
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=64 << 20) as ws:
                cdp = Cdp(ws)
                target = (await cdp.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
                session = (await cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
                page = Page(cdp, session)
                await page.send("Network.enable", {"maxTotalBufferSize": 64 << 20, "maxResourceBufferSize": 16 << 20})
                token = base64.b64encode(f"{a.user}:{a.password}".encode()).decode()
                await page.send("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                await page.send("Emulation.setDeviceMetricsOverride",
                                {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
                start = time.monotonic()
                await page.send("Page.navigate", {"url": a.url + "/ui/#cameras"})
                await page.until("document.body && +document.body.dataset.refreshes >= 1")
                cam_ready = (f"[...document.querySelectorAll('#cameras [data-camera]')]"
                             f".some(c => c.dataset.camera === {json.dumps(a.camera)} && c.querySelector('img').complete"
                             f" && c.querySelector('img').naturalWidth > 0 && c.querySelectorAll('.chart polyline').length > 0)")
                await page.until(cam_ready)
                out["first_render_ms"] = round((time.monotonic() - start) * 1000)
                out["dom"] = await page.eval(READ_DOM)
                shots = {"cameras": await page.screenshot(os.path.join(a.out, "cameras.png"))}
                # Jobs, with the newest job's log opened.
                await page.eval("location.hash = '#jobs'")
                await page.until("!document.querySelector('#view-jobs').hidden")
                await page.eval("document.querySelector('#jobs tbody tr').click()")
                await page.until("document.querySelector('#log').textContent.length > 0")
                out["log_shown"] = await page.eval("document.querySelector('#log').textContent.slice(0, 400)")
                shots["jobs"] = await page.screenshot(os.path.join(a.out, "jobs.png"))
                for view in ("outbox", "delegation"):
                    await page.eval(f"location.hash = '#{view}'")
                    await page.until(f"!document.querySelector('#view-{view}').hidden")
                    shots[view] = await page.screenshot(os.path.join(a.out, f"{view}.png"))
                out["screenshots"] = shots
                # Live: a new frame from the camera shows without a reload.
                await page.eval("location.hash = '#cameras'")
                frames = lambda: (f"(() => {{ const c = [...document.querySelectorAll('#cameras [data-camera]')]"
                                  f".find(c => c.dataset.camera === {json.dumps(a.camera)}); return c ? +c.querySelector('.frames').textContent : -1; }})()")
                before = await page.eval(frames())
                loads = await page.eval("performance.getEntriesByType('navigation').length")
                subprocess.run(a.trigger, shell=True, check=True, timeout=30)
                waited = await page.until(f"{frames()} > {before}", secs=30)
                out["live"] = {"frames_before": before, "frames_after": await page.eval(frames()),
                               "seconds": round(waited, 2),
                               "reloaded": (await page.eval("performance.getEntriesByType('navigation').length")) != loads}
                out["dom_after"] = await page.eval(READ_DOM)
                # Give the new snapshot time to load, then list every image the browser got.
                await asyncio.sleep(1.5)
                images = []
                for ev in list(cdp.events):
                    if ev.get("method") != "Network.responseReceived":
                        continue
                    p = ev["params"]
                    if not p["response"].get("mimeType", "").startswith("image/"):
                        continue
                    try:
                        body = await page.send("Network.getResponseBody", {"requestId": p["requestId"]})
                    except RuntimeError as e:
                        images.append({"url": p["response"]["url"], "error": str(e)})
                        continue
                    raw = base64.b64decode(body["body"]) if body.get("base64Encoded") else body["body"].encode()
                    images.append({"url": p["response"]["url"], "status": p["response"]["status"],
                                   "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)})
                out["images"] = images
                # Page weight: every response the page needed, by size on the wire.
                sizes = {}
                for ev in cdp.events:
                    if ev.get("method") == "Network.loadingFinished":
                        sizes[ev["params"]["requestId"]] = ev["params"]["encodedDataLength"]
                urls = {ev["params"]["requestId"]: ev["params"]["response"]["url"] for ev in cdp.events
                        if ev.get("method") == "Network.responseReceived"}
                out["transfers"] = [{"url": urls.get(k, "?"), "bytes": v} for k, v in sizes.items()]
                # Script errors the page met (the test wants none).
                out["script_errors"] = [ev["params"]["exceptionDetails"].get("exception", {}).get("description")
                                        or ev["params"]["exceptionDetails"].get("text")
                                        for ev in cdp.events if ev.get("method") == "Runtime.exceptionThrown"]
                # Privacy zones: a zone drawn with the mouse over the snapshot, saved, read back.
                card = (f"[...document.querySelectorAll('#cameras [data-camera]')]"
                        f".find(c => c.dataset.camera === {json.dumps(a.camera)})")
                await page.eval(f"{card}.querySelector('.zone-edit').click()")
                rect = await page.eval(f"(() => {{ const r = {card}.querySelector('svg.zones').getBoundingClientRect();"
                                       f" return [r.left, r.top, r.width, r.height]; }})()")
                for fx, fy in ((0.1, 0.1), (0.4, 0.1), (0.4, 0.3), (0.1, 0.3)):
                    x, y = rect[0] + fx * rect[2], rect[1] + fy * rect[3]
                    for kind in ("mousePressed", "mouseReleased"):
                        await page.send("Input.dispatchMouseEvent",
                                        {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})
                shots["zones"] = await page.screenshot(os.path.join(a.out, "zones.png"))
                await page.eval(f"{card}.querySelector('.zone-save').click()")
                await page.until(f"{card}.querySelector('.zone-info').textContent.includes('from api')")
                out["zones"] = await page.eval(f"fetch('/fogd/cameras/' + encodeURIComponent({json.dumps(a.camera)})"
                                               f" + '/zones', {{credentials: 'same-origin'}}).then(r => r.json())")
                out["zones_shown"] = await page.eval(f"{card}.querySelectorAll('svg.zones .zone').length")
                cdp.reader.cancel()
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), 120))
