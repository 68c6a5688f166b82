"""Settings for the whole suite."""

import os

# The compiled bfloat16 pass (``ragflow.embedders.compiled``) is built once per machine in a child process
# and changes which path a plan takes once it is there: tests run the uncompiled passes, deterministic
# from the first test to the last, and tests/embedders/test_compiled.py tests the compiled one itself.
os.environ.setdefault("RAGFLOW_EMBED_COMPILE", "off")
