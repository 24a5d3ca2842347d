"""Scoring an archive: streaming, resumable `predict` over many files, on this machine or on Ray.

`writers` appends each chunk's rows as soon as it is scored and tells a resumed run what is done; `local` runs
the pipeline with worker processes for decoding and the gate; `ray_engine` runs the same steps on Ray Data.
"""
