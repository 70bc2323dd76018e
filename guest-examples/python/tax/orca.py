"""A thin helper over the componentize-py bindings of `orca:plugin@0.1.0` (world `step-component`).

    import orca

    def my_step(ctx: orca.Context):
        ...                      # ctx.input, ctx.results, ctx.config are parsed JSON
        return {"ok": True}      # any JSON-serializable value

    Step = orca.export_step(my_step)   # componentize-py looks for `Step` in the app module

Raise `orca.StepError(message, retryable=..., code=...)` to fail the step; host errors from
`http`/`state` are raised as `orca.HostError` and become step errors (retryable when transient);
any other exception is a fatal error, code `exception`.
"""

import json
from typing import Any, Callable, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http as _http
from wit_world.imports import log as _log
from wit_world.imports import state as _state
from wit_world.imports import types as _types

__all__ = ["Context", "StepError", "HostError", "export_step", "http", "state", "log"]


class StepError(Exception):
    """A failure the step reports; `retryable` lets the step's retry policy try again."""

    def __init__(self, message: str, retryable: bool = False, code: Optional[str] = None):
        super().__init__(message)
        self.message, self.retryable, self.code = message, retryable, code


class HostError(StepError):
    """A refused or failed host call (`http` or `state`)."""


def _loads(text: str) -> Any:
    return json.loads(text) if text.strip() else None


class Context:
    """The call a step serves; `input`, `results` and `config` are parsed JSON."""

    def __init__(self, c: _types.Context):
        self.execution_id = c.execution_id
        self.workflow = c.workflow
        self.step = c.step
        self.phase = "compensate" if c.phase == _types.Phase.COMPENSATE else "run"
        self.attempt = c.attempt
        self.input = _loads(c.input)
        self.results = _loads(c.results) or {}
        self.config = _loads(c.config) or {}

    def result(self, step: str) -> Any:
        """The result of the earlier step `step`, or None."""
        return self.results.get(step)


def export_step(fn: Callable[[Context], Any]) -> type:
    """Makes the `Step` export class from `fn(ctx) -> JSON-serializable value`."""

    class Step(exports.Step):
        def run(self, context: _types.Context) -> str:
            try:
                return json.dumps(fn(Context(context)))
            except StepError as e:
                raise Err(_types.Error(message=e.message, retryable=e.retryable, code=e.code))
            except Exception as e:  # noqa: BLE001 - every failure must reach the host as an error
                raise Err(_types.Error(message=f"{type(e).__name__}: {e}", retryable=False, code="exception"))

    return Step


def _host_error(kind: str, err: Err) -> HostError:
    value = err.value
    name = type(value).__name__.split("_")[-1].lower()  # Error_Denied -> denied
    detail = getattr(value, "value", None)
    retryable = name in ("unavailable", "timeout", "connection")
    return HostError(f"{kind} {name}" + (f": {detail}" if detail else ""), retryable, f"{kind}_{name}")


class _Log:
    """`log.info("message", key=value, ...)` into the host's log."""

    def _emit(self, level: _log.Level, message: str, fields: dict) -> None:
        _log.log(level, message, [(k, str(v)) for k, v in fields.items()])

    def debug(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.DEBUG, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.INFO, message, fields)

    def warn(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.WARN, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.ERROR, message, fields)


class _State:
    """JSON values in the host's state store; `scope` is "execution" or "tenant"."""

    @staticmethod
    def _scope(scope: str) -> _state.Scope:
        return _state.Scope.TENANT if scope == "tenant" else _state.Scope.EXECUTION

    def get_json(self, scope: str, key: str) -> Any:
        try:
            raw = _state.get(self._scope(scope), key)
        except Err as e:
            raise _host_error("state", e) from None
        return None if raw is None else json.loads(raw)

    def set_json(self, scope: str, key: str, value: Any, ttl_seconds: Optional[int] = None) -> None:
        try:
            _state.set(self._scope(scope), key, json.dumps(value).encode(), ttl_seconds)
        except Err as e:
            raise _host_error("state", e) from None

    def delete(self, scope: str, key: str) -> None:
        try:
            _state.delete(self._scope(scope), key)
        except Err as e:
            raise _host_error("state", e) from None

    def list_keys(self, scope: str, prefix: str = "") -> list:
        try:
            return _state.list_keys(self._scope(scope), prefix)
        except Err as e:
            raise _host_error("state", e) from None


class Response:
    def __init__(self, r: _http.Response):
        self.status, self.headers, self.body = r.status, r.headers, r.body

    def json(self) -> Any:
        return json.loads(self.body)


class _Http:
    """HTTP through the host (only to hosts in the component's grants)."""

    def request(self, method: str, url: str, body: Any = None, headers: Optional[list] = None,
                timeout_ms: Optional[int] = None) -> Response:
        headers = list(headers or [])
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.append(("content-type", "application/json"))
        try:
            r = _http.send(_http.Request(method=method, url=url, headers=headers, body=data, timeout_ms=timeout_ms))
        except Err as e:
            raise _host_error("http", e) from None
        if r.status >= 400:
            raise HostError(f"HTTP {r.status} from {url}", r.status >= 500 or r.status in (408, 429), "http_status")
        return Response(r)

    def get(self, url: str, **kw: Any) -> Response:
        return self.request("GET", url, **kw)

    def post_json(self, url: str, value: Any, **kw: Any) -> Response:
        return self.request("POST", url, body=value, **kw)


log = _Log()
state = _State()
http = _Http()
