"""Contracts: what crosses the wire, decoded without I/O.

Typed input records (match events, verified outcomes), their decoder with precise rejections,
batch envelopes, the one partitioning function from event_id to input partition, and the topic
names. Every later stage speaks these types.
"""
