"""Formatting for people: plain text (``text``), HTML pieces (``html``), version and cache
tables (``tables``) and the notebook views of catalogs and datasets (``notebook``).

Pure formatting: these modules take values and return strings; none reads the cache, the
network or a file (the architecture test enforces it).
"""
