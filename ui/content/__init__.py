"""What the pages say and draw from: the paper's claims and their verdicts, the theory overlays, the
numbers pages state (aggregates, growth, rates), the sweep explorer's data and the training pages' runs."""
