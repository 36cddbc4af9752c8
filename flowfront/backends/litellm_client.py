"""The one module that touches litellm.

litellm is imported on first use (its import costs seconds and, unless told otherwise, fetches a
price map from the internet), configured once, and never imported on the replay start-up path.
The replay backend is registered here as a litellm custom provider (``replay/<model>``), so the
production path through ``litellm.acompletion`` can be exercised offline end to end.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from flowfront.backends.base import Backend, CallRequest, Completion
from flowfront.errors import BackendError, SpecError
from flowfront.modelcards import ModelCard
from flowfront.settings import Settings
from flowfront.store import Trace, TraceStore, call_key, prompt_key

_REPLAY_PROVIDER = "flowfront-replay"
_RETRYABLE = {
    "RateLimitError", "Timeout", "APIConnectionError", "ServiceUnavailableError",
    "InternalServerError", "APIError", "BadGatewayError",
}
_NOT_RETRYABLE_HINTS = {
    "AuthenticationError": "set the provider's API key in the environment (e.g. OPENAI_API_KEY)",
    "NotFoundError": "check the model name in configs/models (litellm_model) and the provider",
    "BadRequestError": "the provider rejected the request; check the model's parameters and budget",
    "ContextWindowExceededError": "the prompt is too long for this model; choose a model with a larger context",
    "PermissionDeniedError": "the key has no access to this model",
}
_lib: Any = None


def litellm_module() -> Any:
    """Import and configure litellm once."""
    global _lib
    if _lib is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.drop_params = True  # a budget knob a provider lacks is dropped, not an error
        litellm.telemetry = False
        _lib = litellm
    return _lib


def translate_error(exc: BaseException, model: str) -> BackendError:
    """Map a litellm/provider exception onto BackendError(retryable=...)."""
    seen: BaseException | None = exc
    while seen is not None:  # litellm wraps a custom provider's own error; find it
        if isinstance(seen, BackendError):
            return seen
        seen = seen.__cause__ or seen.__context__
    kind = type(exc).__name__
    status = getattr(exc, "status_code", None)
    retryable = kind in _RETRYABLE or (isinstance(status, int) and (status == 429 or status >= 500))
    hint = _NOT_RETRYABLE_HINTS.get(kind, "retry later" if retryable else None)
    first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else kind
    return BackendError(f"{kind} from {model!r}: {first_line}", model=model, retryable=retryable, hint=hint)


def budget_params(card: ModelCard | None, budget: int | None) -> dict[str, Any]:
    """Map a budget onto the provider's knob: a thinking budget, a reasoning effort, or max_tokens."""
    if budget is None:
        return {}
    style = getattr(card, "budget_style", "max_tokens") if card else "max_tokens"
    if style == "thinking":
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}
    if style == "reasoning_effort":
        effort = "low" if budget <= 1024 else "medium" if budget <= 4096 else "high"
        return {"reasoning_effort": effort, "max_tokens": budget}
    return {"max_tokens": budget}


class LiteLLMBackend(Backend):
    """Calls providers through ``litellm.acompletion`` with retries and exponential backoff."""

    name = "litellm"

    def __init__(
        self,
        cards: dict[str, ModelCard],
        settings: Settings,
        *,
        api_base: str | None = None,
        replay: Backend | None = None,
    ) -> None:
        self.cards = cards
        self.settings = settings
        self.api_base = api_base
        self.replay = replay

    def concurrency(self, model: str) -> int | None:
        card = self.cards.get(model)
        return getattr(card, "max_concurrency", None) if card else None

    def identity(self, model: str) -> str:
        route = self._route(model)
        return f"{route}@{self.api_base}" if self.api_base else route

    def _route(self, model: str) -> str:
        if self.replay is not None:
            return f"{_REPLAY_PROVIDER}/{model}"
        if self.api_base is not None:
            return f"openai/{model}"  # an OpenAI-compatible server (vLLM, replay-serve) by model name
        card = self.cards.get(model)
        return card.litellm_model if card is not None and card.litellm_model else model

    async def complete(self, request: CallRequest) -> Completion:
        lib = litellm_module()
        if self.replay is not None:
            register_replay_provider(self.replay)
        kwargs: dict[str, Any] = {**request.sampling, **budget_params(self.cards.get(request.model), request.budget)}
        if self.api_base is not None:
            kwargs.update(api_base=self.api_base, api_key=os.environ.get("FLOWFRONT_REPLAY_KEY", "replay"))
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = await lib.acompletion(
                    model=self._route(request.model), messages=list(request.messages),
                    timeout=self.settings.call_timeout_s, num_retries=0, **kwargs,
                )
                return self._completion(request, response, time.perf_counter() - started)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # every provider error is translated, none swallowed
                error = translate_error(exc, request.model)
                if not error.retryable or attempt >= self.settings.max_retries:
                    raise error from exc
            attempt += 1
            await asyncio.sleep(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2))

    def _completion(self, request: CallRequest, response: Any, measured: float) -> Completion:
        hidden = getattr(response, "_hidden_params", {}) or {}
        replayed = hidden.get("flowfront")
        if isinstance(replayed, Completion):
            return replayed  # the replay provider's own answer, carried through litellm unchanged
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_s=measured,
            cost_usd=self._cost(request.model, response, prompt, completion),
            latency_source="measured",
            truncated=getattr(choice, "finish_reason", None) == "length",
        )

    def _cost(self, model: str, response: Any, prompt: int, completion: int) -> float:
        card = self.cards.get(model)
        if card is not None:
            return card.cost_usd(prompt, completion)
        try:
            return float(litellm_module().completion_cost(completion_response=response) or 0.0)
        except Exception as exc:
            raise SpecError(
                f"no price for model {model!r}: litellm's price map lacks it ({type(exc).__name__})",
                hint="add configs/models/<model>.yaml with its prices",
            ) from None

    async def check(self) -> None:
        if self.replay is not None:
            await self.replay.check()


def register_replay_provider(replay: Backend) -> None:
    """Expose ``replay`` to litellm as the custom provider ``flowfront-replay``."""
    lib = litellm_module()
    for item in lib.custom_provider_map:
        if item.get("provider") == _REPLAY_PROVIDER and getattr(item["custom_handler"], "replay", None) is replay:
            return
    handler = _replay_handler_class()(replay)
    lib.custom_provider_map = [i for i in lib.custom_provider_map if i.get("provider") != _REPLAY_PROVIDER]
    lib.custom_provider_map.append({"provider": _REPLAY_PROVIDER, "custom_handler": handler})
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


def _replay_handler_class() -> type:
    lib = litellm_module()

    class ReplayHandler(lib.CustomLLM):
        """litellm custom provider answering from the replay backend."""

        def __init__(self, replay: Backend) -> None:
            super().__init__()
            self.replay = replay

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            params = kwargs.get("optional_params") or {}
            budget = params.get("max_tokens") or params.get("max_completion_tokens")
            sampling = {k: v for k, v in params.items() if k in {"temperature", "top_p", "seed", "n"}}
            # litellm hands over the model name with the provider prefix already removed
            request = CallRequest(model=model.removeprefix(f"{_REPLAY_PROVIDER}/"), messages=tuple(messages),
                                  budget=budget, sampling=sampling)
            done = await self.replay.complete(request)
            response = lib.ModelResponse(
                model=request.model,
                choices=[{"index": 0, "finish_reason": "length" if done.truncated else "stop",
                          "message": {"role": "assistant", "content": done.text or ""}}],
                usage={"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                       "total_tokens": done.prompt_tokens + done.completion_tokens},
            )
            response._hidden_params["flowfront"] = done
            return response

    return ReplayHandler


class CachedBackend(Backend):
    """A backend in front of the trace store: a recorded call is never made twice.

    Each finished call is committed before the result is returned, so a run killed at any point
    and started again repeats no recorded call and loses no finished one.
    """

    name = "cached"

    def __init__(self, inner: Backend, store: TraceStore) -> None:
        self.inner = inner
        self.store = store

    def concurrency(self, model: str) -> int | None:
        return self.inner.concurrency(model)

    async def complete(self, request: CallRequest) -> Completion:
        who = self.inner.identity(request.model)
        key = call_key(who, request.budget, request.messages, request.sampling)
        hit = await asyncio.to_thread(self.store.get, key)
        if hit is not None and hit.error is None:
            return Completion(
                text=hit.response, prompt_tokens=hit.prompt_tokens or 0, completion_tokens=hit.completion_tokens or 0,
                latency_s=hit.latency_s or 0.0, cost_usd=hit.cost_usd or 0.0, latency_source="recorded",
                truncated=bool(hit.request.get("truncated")), recorded_score=hit.score, cached=True,
            )
        done = await self.inner.complete(request)
        trace = Trace(
            key=key, prompt_key=prompt_key(who, request.messages, request.sampling), model=request.model,
            budget=request.budget,
            request={"model": request.model, "provider": who, "messages": list(request.messages), "budget": request.budget,
                     "sampling": request.sampling, "truncated": done.truncated},
            response=done.text, prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens,
            latency_s=done.latency_s, cost_usd=done.cost_usd, score=done.recorded_score, source="live",
        )
        await asyncio.to_thread(self.store.put, trace)
        return done

    async def check(self) -> None:
        await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()
