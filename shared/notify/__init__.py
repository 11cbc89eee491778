"""Owner digests: each owner told, by e-mail, which of their keys are due or overdue and what to do."""
