"""The working database over time: built beside and swapped in (:mod:`.rebuild`, which is
refresh-db), kept matched to the checked-out code by ``up`` (:mod:`.working`,
:mod:`.rerun`), one per git branch (:mod:`.branches`), and cached for CI
(:mod:`.cidump`) and for the team (:mod:`.oci`, an OCI registry).

Above :mod:`devenv.building` (running steps) and :mod:`devenv.services`; below the
commands. The PostgreSQL primitives these use live in :mod:`devenv.postgres`.
"""
