"""The compute boundary: the shared caches and the serving gate in front of the engine, what a view
costs, the outcome of a computation on a page (queued, refused, stopped), the study runner and the
export panel."""
