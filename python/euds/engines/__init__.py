"""Execution engines: where a scoring run's work happens. One driver (:mod:`.driver`) decides
what happens; ``local`` (:mod:`.local`, the default: this process) and ``ray`` (:mod:`.ray`:
actor pools on a Ray cluster) only run it, and write the same score directories."""
