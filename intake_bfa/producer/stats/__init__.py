"""``bfa stats``: download counts from the GitHub API (``counts``), their append-only history
(``history``), monthly figures (``monthly``) and charts (``plot``)."""
