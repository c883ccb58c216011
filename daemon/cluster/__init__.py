"""Distributed offline search: an archive cut into spans, searched on a Dask cluster, merged into one result.

* :mod:`.spans` - the spans (what each owns, its lead-in) and the search of one span;
* :mod:`.merge` - spans' results into one search's triggers, FARs and background;
* :mod:`.search` - ``gwstream search --workers/--scheduler``: the cluster, the tasks, the checks.
"""
