"""Everything devenv does with PostgreSQL itself.

- :mod:`.database`: targets (where a database is), connections, create/drop, identity.
- :mod:`.pgwire`, :mod:`.libpq`: the client devenv's own catalog work goes through.
- :mod:`.pgcluster`: a cluster run from local server binaries (the native backend, tests).
- :mod:`.siblings`: databases beside the working one (the build, the backup, snapshots,
  the ready clone, parked branches), their JSON comments, clone, swap, gc.
- :mod:`.dumpfiles`: snapshot files, pg_dump and pg_restore, untrusted restores.
- :mod:`.rebuild`: refresh-db: build beside, swap in on success, undo, recover.
- :mod:`.branches`, :mod:`.phantoms`, :mod:`.rerun`, :mod:`.working`: the daily loop
  (a branch's own database; migrations the code no longer has; whether a step may run
  again on top).
"""
