"""The seed project's serving pattern, rebuilt as a yardstick (never served to anyone).

    python -m bench.baselines.seed_flask --port P --model models/model.keras --uploads DIR

What the seed did per request, kept here on purpose because its cost is what we measure:
Flask's threaded development server; the upload saved to disk under the client's filename;
read back with cv2.imread; resized to 128x128; one Keras `model.predict` call per request
(which builds a data adapter and prints a progress bar every time); a rendered HTML answer.
Two changes, neither of which changes the cost: only the file name's last part is used (so a
benchmark cannot write outside DIR), and the network is our committed two-view model, so the
128x128 image feeds its fully convolutional local input and a 64x64 resize its global input,
as float 0-255 (our network scales inside; the seed divided by 255 for its own).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from flask import Flask, render_template_string, request

PAGE = """<!doctype html><title>Deepfake Detection</title>
<h1>Upload an Image for Deepfake Detection</h1>
<form method="post" enctype="multipart/form-data" action="/upload">
<input type="file" name="file" accept="image/*" required><input type="submit" value="Upload"></form>
{% if result %}<p>Prediction: {{ result }}</p>{% endif %}"""


def create_app(model: Any, uploads: Path) -> Flask:
    app = Flask(__name__)

    @app.route("/")
    def index() -> str:
        return render_template_string(PAGE, result=None)

    @app.route("/upload", methods=["POST"])
    def upload() -> str:
        file = request.files["file"]
        path = os.path.join(uploads, os.path.basename(file.filename or "upload"))
        file.save(path)
        img = cv2.imread(path)
        img = cv2.resize(img, (128, 128))
        local = img.reshape(1, 128, 128, 3).astype(np.float32)
        global_ = cv2.resize(img, (64, 64)).reshape(1, 64, 64, 3).astype(np.float32)
        prediction = model.predict({"local": local, "global": global_})
        result = "Fake" if prediction[0][0] > 0 else "Real"  # the network outputs a logit
        return render_template_string(PAGE, result=result)

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--uploads", type=Path, required=True)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    model = keras.models.load_model(args.model, compile=False)
    create_app(model, args.uploads).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
