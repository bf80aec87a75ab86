"""Training: the SSN model, tasks, loss, the three SGD stages and their entry points."""
