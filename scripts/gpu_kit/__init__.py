"""The GPU verification kit behind scripts/gpu_check.py: every model family built at full size (or tiny, on
the CPU) and run through drylocal's own loader, worker and pipelines, one process per family.

- ``random_weights``: the check's one stand-in, weight files that describe tensors instead of holding them.
- ``folders``: a model folder per family, from the tests' tiny builders, with full-size configs swapped in.
- ``families``: what each family runs and how it is judged.
- ``inputs``: the pictures and speech the jobs upload.
- ``probes``: memory, time and finiteness measured around drylocal's own calls.
- ``verdicts``: how those figures are judged.
- ``family_run``: one family, in its own process: serve, run, unload, and where asked the raw call beside it.
- ``direct``: the raw library calls the API is compared with.
- ``report``: the JSON report and the printed table.
"""
