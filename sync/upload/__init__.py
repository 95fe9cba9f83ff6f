"""The station's uploads to the central store: the tus client and the upload worker."""
