"""Scheduled export of UCD events, as CSV files, into customers' cloud storage."""
