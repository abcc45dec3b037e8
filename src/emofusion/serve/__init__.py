"""Serve a saved model over HTTP: ``emofusion serve model.zip``.

* `inputs`: checks what a request sends (audio bytes, transcript, video bytes, feature arrays)
  and turns every problem into a `RequestProblem` with an HTTP status and a message that says
  what to fix.
* `service`: `PredictionService` holds the model (loaded once) and answers one utterance:
  label, every class's probability and, for late fusion and stacking, each modality's own.
* `app`: the FastAPI application (``/predict``, ``/predict/batch``, ``/model``, ``/health``,
  the web page at ``/``), the upload size limit and the optional API key.
* `server`: runs the application on uvicorn.

Needs the ``serve`` extra: ``pip install 'emofusion[serve]'``.
"""
