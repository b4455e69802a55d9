"""The pure core: values and decisions, no I/O, no clock reads, no asyncio.

Every function here takes the current time as an argument (`now_s`, Unix seconds) so that
verification, replay windows, dedup, routing and scheduling are deterministic and
property-testable.
"""
