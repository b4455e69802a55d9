"""Widgets of the relayd console; each one renders one part of `tui.model.Model`."""
