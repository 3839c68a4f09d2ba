"""Loaded with `-p tests.env_defaults`, before Django reads its settings: gives this test run its
own media folder, broker folder, export folders and SQLite file, which worker processes started by the tests
inherit through the environment."""
import os
import tempfile

_run_dir = tempfile.mkdtemp(prefix="prefstudio-test-")
os.environ.setdefault("DJANGO_MEDIA_ROOT", os.path.join(_run_dir, "media"))
os.environ.setdefault("CELERY_BROKER_FOLDER", os.path.join(_run_dir, "broker"))
os.environ.setdefault("DJANGO_TEST_SQLITE_NAME", os.path.join(_run_dir, "test.sqlite3"))
os.environ.setdefault("EXPORT_ROOT", os.path.join(_run_dir, "exports"))
os.environ.setdefault("EXPORT_STAGING_DIR", os.path.join(_run_dir, "export-staging"))
# Hypothesis (under schemathesis) keeps its caches here, not in ./.hypothesis.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(_run_dir, "hypothesis"))
os.environ["PREFSTUDIO_TEST_RUN_DIR"] = _run_dir
