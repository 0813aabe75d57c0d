"""NSFW levels from the NudeNet detector (its ONNX model ships in the `nudenet` wheel).

Mapping of detector labels to Civitai levels, by the strongest detection (score ≥ SURE):
  XXX  exposed genitalia or anus
  X    exposed female breasts or buttocks
  R    covered genitalia, covered breasts or buttocks (revealing underwear and swimwear)
  PG13 exposed belly, male chest, armpits or feet
  PG   anything else
A detection of an X/XXX label between UNSURE and SURE makes the result uncertain: the image keeps
the level above and goes to the moderation queue."""
from __future__ import annotations

import threading

PG, PG13, R, X, XXX = 1, 2, 4, 8, 16
SURE, UNSURE = 0.5, 0.3
LABEL_LEVELS = {
    "FEMALE_GENITALIA_EXPOSED": XXX, "MALE_GENITALIA_EXPOSED": XXX, "ANUS_EXPOSED": XXX,
    "FEMALE_BREAST_EXPOSED": X, "BUTTOCKS_EXPOSED": X,
    "FEMALE_GENITALIA_COVERED": R, "FEMALE_BREAST_COVERED": R, "BUTTOCKS_COVERED": R, "ANUS_COVERED": R,
    "BELLY_EXPOSED": PG13, "MALE_BREAST_EXPOSED": PG13, "ARMPITS_EXPOSED": PG13, "FEET_EXPOSED": PG13,
}
_lock = threading.Lock()
_detector = None


def level_for(detections: list[dict]) -> tuple[int, bool]:
    """(level, uncertain) for NudeNet detections [{class, score, box}]."""
    level, uncertain = PG, False
    for d in detections:
        label_level = LABEL_LEVELS.get(d.get("class"), PG)
        score = float(d.get("score", 0))
        if score >= SURE:
            level = max(level, label_level)
        elif score >= UNSURE and label_level >= X:
            uncertain = True
    return level, uncertain


def detector():
    global _detector
    with _lock:
        if _detector is None:
            from nudenet import NudeDetector
            _detector = NudeDetector()
    return _detector


def detect(images: list[bytes], batch_size: int = 8) -> list[list[dict]]:
    """Detections for each encoded image (PNG/JPEG/WebP bytes), run in batches."""
    import cv2
    import numpy as np
    decoded = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in images]
    return detector().detect_batch(decoded, batch_size=batch_size)
