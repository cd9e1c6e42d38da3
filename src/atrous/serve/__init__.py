"""``atrous serve``: a segmentation model behind an HTTP API and a web page.

:mod:`~atrous.serve.service` loads a checkpoint in any engine and answers one image;
:mod:`~atrous.serve.batcher` batches concurrent requests of one size into one model call;
:mod:`~atrous.serve.app` is the FastAPI application (the optional ``serve`` extra) with the page
``static/index.html``; :mod:`~atrous.serve.load` measures it under load on loopback.
"""
