"""Built databases kept for later: :mod:`.cidump` (ci-setup's dump in a CI cache folder)
and :mod:`.oci` (the team's snapshots in an OCI registry)."""
