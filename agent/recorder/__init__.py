"""The recorder: firmware profiles, names, media listing, status files, and the simulated recorder.

Everything a recorder presents is untrusted (rule 6, docs/architecture.md).
"""
