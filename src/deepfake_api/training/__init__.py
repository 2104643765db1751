"""Training, audit, split, calibration and evaluation. Uses preprocess and model, never the API."""
