"""The public API: ``__all__`` is complete and every name in it exists."""

import types

import rag_middleware


def test_all_names_exist():
    for name in rag_middleware.__all__:
        assert hasattr(rag_middleware, name), name


def test_all_is_complete():
    public = {
        name for name, value in vars(rag_middleware).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(rag_middleware.__all__), public - set(rag_middleware.__all__)


def test_errors_share_one_root():
    from rag_middleware import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.RagMiddlewareError), name
