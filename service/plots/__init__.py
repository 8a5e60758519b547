"""Charts of jobs, sweeps and paths as SVG or PNG bytes (matplotlib's object API, no pyplot).

Import ``service.plots.render`` where a chart is drawn: matplotlib loads only then.
"""
