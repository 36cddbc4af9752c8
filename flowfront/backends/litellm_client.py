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
from collections.abc import Sequence
from typing import Any

from flowfront.backends.base import Backend, CallRequest, Completion, DeltaSink
from flowfront.errors import BackendError, SpecError
from flowfront.modelcards import ModelCard
from flowfront.settings import Settings
from flowfront.tokens import count_message_tokens

_REPLAY_PROVIDER = "flowfront-replay"
_RETRYABLE = {
    "RateLimitError", "Timeout", "APIConnectionError", "ServiceUnavailableError",
    "InternalServerError", "APIError", "BadGatewayError",
}
_NOT_RETRYABLE_HINTS = {
    "AuthenticationError": "set the provider's API key in the environment (e.g. OPENAI_API_KEY)",
    "NotFoundError": "check the model name in configs/models (litellm_model) and the provider",
    "BadRequestError": "the provider rejected the request; check the model's parameters and budget",
    "ContextWindowExceededError": "the prompt is too long for this model; choose a model with a larger "
                                  "context",
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
        _route_logs_through_root()
        _lib = litellm
    return _lib


def _route_logs_through_root() -> None:
    """litellm attaches stream handlers of its own at import; send its records to the root
    logger's handlers instead, whose formatter redaction wraps (flowfront.redact)."""
    import logging

    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def translate_error(exc: BaseException, model: str, api_base: str | None = None) -> BackendError:
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
    refused = kind == "APIConnectionError" or "Connection error" in str(exc)  # litellm may wrap it as a 500
    if refused and api_base is not None:
        hint = f"nothing answers at {api_base}: start the server (`flowfront models serve`) or fix --api-base"
    if kind == "NotFoundError" and api_base is not None:
        hint = (f"the server at {api_base} does not serve {model!r}: check its model alias "
                f"(GET {api_base}/models)")
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
    """Calls providers through ``litellm.acompletion`` with retries and exponential backoff.

    Where a model is answered: ``api_base`` (one OpenAI-compatible server for every model), else
    the local llama.cpp server ``flowfront models serve`` recorded for it, else its card's
    ``api_base``, else the provider's own endpoint. Live calls stream, so the trace records the
    time to first token and when every token arrived.
    """

    name = "litellm"

    def __init__(
        self,
        cards: dict[str, ModelCard],
        settings: Settings,
        *,
        api_base: str | None = None,
        replay: Backend | None = None,
        models: Sequence[str] = (),
    ) -> None:
        self.cards = cards
        self.models = list(models)
        self.settings = settings
        self.api_base = api_base or settings.api_base
        self.replay = replay
        self._local_bases: dict[str, str] | None = None
        self._served: dict[str, frozenset[str] | None] = {}  # per base URL: the models it lists

    def concurrency(self, model: str) -> int | None:
        card = self.cards.get(model)
        return getattr(card, "max_concurrency", None) if card else None

    def identity(self, model: str) -> str:
        card = self.cards.get(model)
        if card is not None and card.local is not None and self.api_base is None and self.replay is None:
            return model  # the card pins the exact weights (sha256), wherever the server listens
        route = self._route(model)
        return f"{route}@{self.api_base}" if self.api_base else route

    def base_for(self, model: str) -> str | None:
        """The base URL calls to ``model`` go to (None: the provider's default)."""
        if self.api_base is not None:
            return self.api_base
        card = self.cards.get(model)
        if card is not None and card.local is not None:
            if self._local_bases is None:
                from flowfront.localmodels import api_bases

                self._local_bases = api_bases(self.settings.models_dir)
            base = self._local_bases.get(model)
            if base is None:
                raise BackendError(f"no local server is running for {model!r}", model=model,
                                   hint="start one with `flowfront models serve` (or pass --api-base)")
            return base
        return card.api_base if card is not None else None

    def _route(self, model: str) -> str:
        if self.replay is not None:
            return f"{_REPLAY_PROVIDER}/{model}"
        card = self.cards.get(model)
        if self.api_base is not None and not (card is not None and card.local is not None):
            return f"openai/{model}"  # an OpenAI-compatible server (vLLM, replay-serve) by model name
        return card.litellm_model if card is not None and card.litellm_model else model

    def _key(self) -> str:
        if self.settings.provider_api_key is not None:
            return self.settings.provider_api_key.get_secret_value()
        return os.environ.get("FLOWFRONT_REPLAY_KEY", "none")

    async def complete(self, request: CallRequest, *, on_delta: DeltaSink | None = None) -> Completion:
        if self.replay is not None:
            register_replay_provider(self.replay)
            if on_delta is not None:  # the replay provider answers whole; hand its text over as one piece
                done = await self.complete(request)
                on_delta(done.text or "")
                return done
        kwargs: dict[str, Any] = {
            **request.sampling,
            **budget_params(self.cards.get(request.model), request.budget),
        }
        base = None if self.replay is not None else self.base_for(request.model)
        if base is not None:
            kwargs.update(api_base=base, api_key=self._key())
            await self._check_served(base, request.model)
        stream = self.replay is None and (on_delta is not None or self._streams(request.model))
        direct = stream and base is not None and self._direct(request.model)
        sent = [0]  # pieces handed to on_delta: a call that has sent text cannot be retried

        def forward(piece: str) -> None:
            sent[0] += 1
            if on_delta is not None:
                on_delta(piece)

        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                if direct and base is not None:
                    return await self._read_direct(request, base, kwargs, started, forward)
                response = await litellm_module().acompletion(
                    model=self._route(request.model), messages=list(request.messages),
                    timeout=self.settings.call_timeout_s, num_retries=0, stream=stream, **kwargs,
                )
                if stream:
                    return await self._streamed(request, response, started, forward)
                return self._completion(request, response, time.perf_counter() - started)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # every provider error is translated, none swallowed
                error = translate_error(exc, request.model, base)
                if not error.retryable or attempt >= self.settings.max_retries or sent[0]:
                    raise error from exc
            attempt += 1
            await asyncio.sleep(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2))

    async def _check_served(self, base: str, model: str) -> None:
        """Refuse a call a server would answer with another model than the one asked for: an
        OpenAI-compatible server with one model (llama.cpp) answers any model name with its own,
        and the answer would be recorded under the wrong name. The list comes from ``GET
        {base}/models`` once per server; a server that lists none is not checked."""
        if base not in self._served:
            import httpx

            try:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    reply = await client.get(
                        f"{base}/models", headers={"authorization": f"Bearer {self._key()}"}
                    )
                ids = (
                    {m.get("id") for m in reply.json().get("data", [])} if reply.status_code == 200 else set()
                )
            except (httpx.HTTPError, ValueError, AttributeError):
                ids = set()  # unreachable or no list: the call itself says what is wrong
            self._served[base] = frozenset(i for i in ids if isinstance(i, str)) or None
        served = self._served[base]
        if served is not None and model not in served and self._route(model).split("/", 1)[-1] not in served:
            raise BackendError(
                f"the server at {base} serves {sorted(served)[:5]}, not {model!r}: its answer would be "
                "another model's",
                model=model,
                hint=f"start a server for {model!r} (`flowfront models serve`) or point --api-base "
                "at one that serves it",
            )

    def _streams(self, model: str) -> bool:
        mode = self.settings.stream_live_calls
        card = self.cards.get(model)
        return mode == "always" or (mode == "auto" and card is not None and card.local is not None)

    def _direct(self, model: str) -> bool:
        """Read this model's stream without litellm (``live_transport=direct``; backends/sse.py)."""
        return self.settings.live_transport == "direct"

    async def _read_direct(self, request: CallRequest, base: str, kwargs: dict[str, Any], started: float,
                           forward: DeltaSink) -> Completion:
        from flowfront.backends.sse import stream_chat

        body = {k: v for k, v in kwargs.items() if k not in {"api_base", "api_key"}}
        body["messages"] = list(request.messages)
        got = await stream_chat(
            base,
            self._key(),
            request.model,
            self._route(request.model).split("/", 1)[-1],
            body,
            self.settings.call_timeout_s,
            started,
            forward,
        )
        usage = got.usage or {}
        return self._from_stream(request, got, int(usage.get("prompt_tokens") or 0),
                                 int(usage.get("completion_tokens") or 0), started)

    async def _streamed(
        self, request: CallRequest, stream: Any, started: float, forward: DeltaSink
    ) -> Completion:
        """Read a litellm stream; one content chunk is one token on llama.cpp and most providers."""
        from flowfront.backends.sse import Streamed

        got, usage = Streamed(), None
        async for chunk in stream:
            usage = getattr(chunk, "usage", None) or usage
            for choice in getattr(chunk, "choices", None) or []:
                delta = getattr(getattr(choice, "delta", None), "content", None)
                if delta:
                    got.add(delta, time.perf_counter() - started)
                    forward(delta)
                got.finish = getattr(choice, "finish_reason", None) or got.finish
        return self._from_stream(request, got, int(getattr(usage, "prompt_tokens", 0) or 0),
                                 int(getattr(usage, "completion_tokens", 0) or 0), started)

    def _from_stream(
        self, request: CallRequest, got: Any, prompt: int, completion: int, started: float
    ) -> Completion:
        from flowfront.backends.prefix import StreamTiming

        elapsed = time.perf_counter() - started
        completion = completion or len(got.offsets)
        prompt = prompt or count_message_tokens(list(request.messages))
        # finish_reason "length" is what a cut looks like; some servers say "stop" at max_tokens
        truncated = got.finish == "length" or (request.budget is not None and completion >= request.budget)
        timing = (
            StreamTiming(tuple(got.offsets), tuple(got.times)) if len(got.offsets) == completion else None
        )
        return Completion(text="".join(got.parts), prompt_tokens=prompt, completion_tokens=completion,
                          latency_s=elapsed, cost_usd=self._cost(request.model, None, prompt, completion),
                          latency_source="measured", truncated=truncated, timing=timing)

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
        if card is not None and card.has_prices:
            return float(card.cost_usd(prompt, completion))
        try:
            return float(litellm_module().completion_cost(completion_response=response, model=model) or 0.0)
        except Exception as exc:
            raise SpecError(
                f"no price for model {model!r}: litellm's price map lacks it ({type(exc).__name__})",
                hint="add configs/models/<model>.yaml with its prices",
            ) from None

    async def check(self) -> None:
        """Every model with a base URL must be listed by its server (``GET {base}/models``).

        Hosted providers' own endpoints are not probed: listing models there costs a request with
        a key per check, and a provider outage is what the breakers are for.
        """
        if self.replay is not None:
            await self.replay.check()
            return
        import httpx

        by_base: dict[str, list[str]] = {}
        for model in self.models:
            base = self.base_for(model)
            if base is not None:
                by_base.setdefault(base, []).append(model)
        async with httpx.AsyncClient(timeout=5.0) as client:
            for base, models in by_base.items():
                try:
                    reply = await client.get(
                        f"{base}/models", headers={"authorization": f"Bearer {self._key()}"}
                    )
                    served = (
                        {m.get("id") for m in reply.json().get("data", [])}
                        if reply.status_code == 200
                        else None
                    )
                except (httpx.HTTPError, ValueError) as exc:
                    raise BackendError(
                        f"nothing usable answers at {base} ({type(exc).__name__})",
                        retryable=True,
                        hint="start the server (`flowfront models serve`) or fix --api-base",
                    ) from None
                if served is None:
                    raise BackendError(f"{base}/models answered {reply.status_code}", retryable=True,
                                       hint="check the server and FLOWFRONT_PROVIDER_API_KEY")
                missing = [
                    m for m in models if m not in served and self._route(m).split("/", 1)[-1] not in served
                ]
                if missing:
                    raise BackendError(f"the server at {base} does not serve {missing[0]!r} (it serves "
                                       f"{sorted(served)[:5]})", model=missing[0],
                                       hint="serve that model, or fix the model alias / --api-base")


def register_replay_provider(replay: Backend) -> None:
    """Expose ``replay`` to litellm as the custom provider ``flowfront-replay``."""
    lib = litellm_module()
    for item in lib.custom_provider_map:
        if (
            item.get("provider") == _REPLAY_PROVIDER
            and getattr(item["custom_handler"], "replay", None) is replay
        ):
            return
    handler = _replay_handler_class()(replay)
    lib.custom_provider_map = [i for i in lib.custom_provider_map if i.get("provider") != _REPLAY_PROVIDER]
    lib.custom_provider_map.append({"provider": _REPLAY_PROVIDER, "custom_handler": handler})
    from litellm.utils import custom_llm_setup

    custom_llm_setup()  # type: ignore[no-untyped-call]


def _replay_handler_class() -> type:
    lib = litellm_module()

    class ReplayHandler(lib.CustomLLM):  # type: ignore[name-defined,misc]  # a class of the lazily imported module
        """litellm custom provider answering from the replay backend."""

        def __init__(self, replay: Backend) -> None:
            super().__init__()
            self.replay = replay

        async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
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
