"""The science (torch, numpy, pandas): normalizers, models, hooks, metrics, data, the unguarded
measurement, one training run, the study's statistics, summaries and theory. Knows nothing of budgets,
backends or stores."""
