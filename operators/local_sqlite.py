"""Connection arguments for the local stack's SQLite metadata database (named in airflow.cfg).

SQLite lets one writer in at a time and Python's driver gives up after 5 s of waiting, which
Airflow turns into an HTTP 500 ("Database error") or a failed scheduler loop. On a fresh stack
the dag-processor serialises every DAG while the scheduler, triggerer and API server write too,
and on two loaded cores a writer can hold the lock longer than that. Waiting up to 60 s is what
a single-file database needs here; deployments use PostgreSQL and do not read this module.
"""
from __future__ import annotations

#: Passed to ``sqlite3.connect`` (and to aiosqlite, which hands it on): seconds to wait for a lock.
CONNECT_ARGS = {"timeout": 60}
