"""Tests of the parsers of remote script output."""
