"""Fixtures for the download tests: a real file server and a Hugging Face Hub stand-in."""

from tests.fakes.fileserver import file_server
from tests.fakes.huggingface import fake_hub

__all__ = ["fake_hub", "file_server"]
