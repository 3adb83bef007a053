"""Data tests never touch the network: any un-mocked download attempt fails loudly."""
import pytest

from distspike.data import download as dl


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def _refuse(url, timeout):
        raise AssertionError(f"test tried to open {url!r}")

    monkeypatch.setattr(dl, "urlopen", _refuse)
