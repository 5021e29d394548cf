"""The transaction simulator (the handbook's procedure, numpy), the bank's raw file format with its defects, and
`fraud simulate`."""
