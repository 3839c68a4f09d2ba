import pytest

from tests.mlworkers.chat_server import ChatServer


@pytest.fixture
def chat_server():
    """A scripted OpenAI-compatible chat-completions server on loopback; see chat_server.py."""
    server = ChatServer().start()
    yield server
    server.close()
