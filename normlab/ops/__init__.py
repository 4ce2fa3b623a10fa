"""How things run: settings, cost and calibration, budget and refusals, serving, the store and its
records, backends, and the guarded entry points (check -> deadline -> backend -> store), output."""
