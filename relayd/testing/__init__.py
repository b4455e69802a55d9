"""Test helpers shipped as public API: a real Mosquitto on loopback, keys in temp dirs.

Tests, benchmarks and the fault suite use these so that every integration test talks to
real parts (design principle: "real parts, not mocks").
"""
