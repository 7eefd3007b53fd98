"""Jobs (SPEC §8): batches of processing items, and later seed 003's tasks, run by a
task queue inside every `imgcdn serve` process, with their state in a JobStore."""
