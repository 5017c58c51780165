"""What a run shows its users, all read back from the gallery: annotated videos
(``video``), the static site (``site``, ``html``), sightings exports (``sightings``) and
MOTChallenge result files (``mot``)."""
