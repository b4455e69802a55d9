"""Screens of the relayd console."""
