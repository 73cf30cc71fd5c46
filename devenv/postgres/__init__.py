"""devenv's PostgreSQL primitives: no step runs, no service starts from here.

- :mod:`.database`: targets (where a database is), connections, create/drop, identity.
- :mod:`.libpq`: devenv's own connections, through libpq itself (a thin ctypes binding).
- :mod:`.pgcluster`: a cluster run from local server binaries (the native backend, tests).
- :mod:`.siblings`: databases beside the working one (the build, the backup, snapshots,
  the ready clone, parked branches), their JSON comments, clone, swap, gc.
- :mod:`.dumpfiles`: snapshot files, pg_dump and pg_restore, untrusted restores.
- :mod:`.phantoms`: migrations applied in a database that the checked-out code lacks.

What is done with them over time (refresh-db, the daily loop, branches, caches) is
:mod:`devenv.workingdb`.
"""
