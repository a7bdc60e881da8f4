"""Model options (Ollama's ``options`` object), typed once.

:class:`ModelOptions` lists every option Ollama knows with its type, so a request whose ``num_predict`` is
``"lots"`` is refused with the option's name instead of failing deep inside the pipeline. Two markers say
which options this package acts on:

* ``SAMPLING``: a client may set it for a free-text domain, a domain may set it in ``domain.yaml``, and the
  embedded model maps it onto its own parameter;
* ``DOMAIN_ONLY``: a domain may set it (``num_ctx``), a client may not: the context size is the server's.

Every other option is checked for its type and otherwise left to the upstream (passthrough requests carry
the client's bytes unchanged). Unknown options are kept, as Ollama keeps them.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["DOMAIN_ONLY", "SAMPLING", "ModelOptions"]


class _Use:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


SAMPLING = _Use("SAMPLING")
DOMAIN_ONLY = _Use("DOMAIN_ONLY")


class ModelOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    # what the pipeline acts on
    temperature: Annotated[float | None, SAMPLING] = None
    top_p: Annotated[float | None, SAMPLING] = None
    top_k: Annotated[int | None, SAMPLING] = None
    min_p: Annotated[float | None, SAMPLING] = None
    seed: Annotated[int | None, SAMPLING] = None
    num_predict: Annotated[int | None, SAMPLING] = None
    repeat_penalty: Annotated[float | None, SAMPLING] = None
    stop: Annotated[list[str] | None, SAMPLING] = None
    num_ctx: Annotated[int | None, DOMAIN_ONLY] = None
    # typed, left to the upstream
    num_keep: int | None = None
    typical_p: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    penalize_newline: bool | None = None
    tfs_z: float | None = None
    numa: bool | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    logits_all: bool | None = None
    vocab_only: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    embedding_only: bool | None = None
    num_thread: int | None = None

    SAMPLING_KEYS: ClassVar[frozenset[str]]
    DOMAIN_KEYS: ClassVar[frozenset[str]]

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # one stop string is a list of one

    def sampling(self) -> dict[str, Any]:
        """The options a client may set for a free-text domain, those it did set."""
        return {k: v for k in self.SAMPLING_KEYS if (v := getattr(self, k)) is not None}


def _marked(use: _Use) -> frozenset[str]:
    return frozenset(name for name, info in ModelOptions.model_fields.items() if use in info.metadata)


ModelOptions.SAMPLING_KEYS = _marked(SAMPLING)
ModelOptions.DOMAIN_KEYS = _marked(SAMPLING) | _marked(DOMAIN_ONLY)
