"""The station's uploads to the central store: the tus client and the upload worker.

The client, one file to one tus endpoint:

* ``tus.py``: :class:`~sync.upload.tus.TusUploader`, the tus 1.0 conversation (create,
  resume, PATCH, terminate) and its retry loop; a caller imports the client, its receipt and
  its errors from it.
* ``chunks.py``: the body of one PATCH and the token bucket that paces it.
* ``responses.py``: what the centre's statuses and headers mean.
* ``receipt.py``: the centre's receipt for one file, read and checked.
* ``errors.py``: the upload errors, under ``agent.errors.RecdockError``.

The worker, the station's recordings one pass after another:

* ``worker.py``: :class:`~sync.upload.worker.UploadWorker`, the pass loop and its scheduling
  (allowed hours, wake, stop, backoff).
* ``ledger.py``: what a receipt, a rejection or a missing file does to the catalog and faults.
* ``summary.py``: what a pass reports.
"""
