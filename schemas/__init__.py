"""Pydantic models shared by every stage, plus topic names and codecs."""
