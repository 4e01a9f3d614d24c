"""The only modules that talk to AWS. Each maps AWS errors onto kindling.kernel.errors."""
