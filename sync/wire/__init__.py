"""The wire contract shared by the station and the central store.

Topics, the audit chain's hash, payload schemas and tus metadata. It depends on nothing of
ours, so the central store can import it without the station (docs/architecture.md, Layers).
"""
