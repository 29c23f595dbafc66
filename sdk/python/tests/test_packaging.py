"""What an installed ``nodai`` offers: the typing marker, the version, the public names."""

from __future__ import annotations

from importlib.resources import files

import nodai


def test_py_typed_ships_with_the_package() -> None:
    assert files("nodai").joinpath("py.typed").is_file()


def test_version_and_public_names() -> None:
    assert nodai.__version__ == "0.1.0"
    for name in nodai.__all__:
        assert hasattr(nodai, name), name
    assert callable(nodai.webhooks.verify)
    assert callable(nodai.Nodai.stream_workflow) and callable(nodai.AsyncNodai.stream_workflow)
