"""``devenv init``: find the apps in a repository and draft a steps.yaml for them.

:mod:`devenv.init.detect` reads the repository's files (it never imports the user's code)
and returns :class:`~devenv.init.detect.App` records; :mod:`devenv.init.draft` turns them
into the text of steps.yaml and services/postgres.yaml, with a comment for each choice.
"""
