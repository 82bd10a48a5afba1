"""The gateway's OpenAPI spec as the API really is: response shapes, errors, security, enums, examples.

FastAPI cannot see most of it: the routes answer msgspec-encoded bytes and read bodies with
msgspec. :func:`install` replaces ``app.openapi`` with FastAPI's own spec completed from
:data:`ROUTES`:

* each operation's success response gets its schema (:mod:`stockctl.wire.rest` components) and
  an example; every operation lists the real error answers, ``{"error","detail"}``
  (:class:`~stockctl.wire.rest.Error`), instead of FastAPI's 422 validation shape;
* the ``bearer`` security scheme (a JWT access token): required on private routes, optional
  (``{}`` allowed) on market data when ``public_market_data`` is on, none on ``/api/v1/info``;
* an order body's ``side``, ``type`` and ``tif`` as enums, and numbers as strings or numbers.

The spec is built once, on first request, and kept.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI

from stockctl.settings import Settings
from stockctl.wire.gateway import ORDER_TYPES, SIDES, TIFS, AmendIn, OrderIn
from stockctl.wire.rest import response_schemas

PUBLIC, MARKET, PRIVATE = "public", "market", "private"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


_T = {"ts": 1714555800123456789, "ts_ms": 1714555800123, "time": "2024-05-01T09:30:00.123456789Z"}
_ORDER = {
    "order_id": 42,
    "client_order_id": "bot-1",
    "market": "TATA_INR",
    "side": "buy",
    "type": "limit",
    "tif": "gtc",
    "price": "950.00",
    "qty": "10",
    "remaining": "6",
    "filled_qty": "4",
    "avg_price": "949.5",
    "status": "partially_filled",
    "post_only": False,
    **_T,
}
_FILL = {
    **_T,
    "market": "TATA_INR",
    "side": "buy",
    "qty": "4",
    "price": "949.50",
    "fee": "3.80",
    "liquidity": "taker",
    "order_id": 42,
    "client_order_id": "bot-1",
    "trade_id": 7,
}
_QUOTE = {
    "symbol": "AAPL",
    "price": "228.61",
    "seq": 812,
    "open": "227.00",
    "high": "229.10",
    "low": "226.80",
    "change": "1.61",
    "change_pct": "0.71",
    "volume": 1200,
    **_T,
}

ROUTES: dict[tuple[str, str], tuple[str, int, dict[str, Any], Any]] = {
    # (method, path): (who may call, success status, schema, example)
    ("get", "/api/v1/info"): (
        PUBLIC,
        200,
        _ref("Info"),
        {"ws_url": "ws://127.0.0.1:8702/ws", "ws_path": "/api/v1/ws", "candle_intervals": ["1s", "1m"], "version": "1"},
    ),
    ("get", "/api/v1/symbols"): (MARKET, 200, {"type": "array", "items": {"type": "string"}}, ["AAPL", "MSFT"]),
    ("get", "/api/v1/prices"): (MARKET, 200, _list("Quote"), [_QUOTE]),
    ("get", "/api/v1/prices/{symbol}"): (MARKET, 200, _ref("Quote"), _QUOTE),
    ("get", "/api/v1/history/{symbol}"): (
        MARKET,
        200,
        _list("PricePoint"),
        [["228.61", _T["ts"], 812, _T["ts_ms"], _T["time"]]],
    ),
    ("get", "/api/v1/candles/{symbol}"): (MARKET, 200, _list("Candle"), None),
    ("get", "/api/v1/signals/{symbol}"): (MARKET, 200, _list("Signal"), None),
    ("get", "/api/v1/markets"): (MARKET, 200, _list("MarketSpec"), None),
    ("get", "/api/v1/book/{market}"): (
        MARKET,
        200,
        _ref("Book"),
        {"market": "TATA_INR", "seq": 90, "bids": [["949.50", "6", 1]], "asks": [["950.00", "2", 1]], "last": "950.00"},
    ),
    ("get", "/api/v1/trades/{market}"): (MARKET, 200, _list("PublicTrade"), None),
    ("post", "/api/v1/orders"): (
        PRIVATE,
        201,
        _ref("OrderResult"),
        {"order_id": 42, "client_order_id": "bot-1", "status": "open", "filled": [], "events": []},
    ),
    ("get", "/api/v1/orders"): (PRIVATE, 200, {"anyOf": [_list("OrderState"), _ref("OrdersWithHistory")]}, [_ORDER]),
    ("get", "/api/v1/orders/{order_id}"): (PRIVATE, 200, _ref("OrderState"), _ORDER),
    ("patch", "/api/v1/orders/{order_id}"): (PRIVATE, 200, _ref("AmendResult"), None),
    ("delete", "/api/v1/orders/{order_id}"): (PRIVATE, 200, _ref("OrderResult"), None),
    ("delete", "/api/v1/orders"): (PRIVATE, 200, _ref("CancelAllResult"), {"cancelled": 0, "events": []}),
    ("get", "/api/v1/fills"): (PRIVATE, 200, _list("Fill"), [_FILL]),
    ("get", "/api/v1/balances"): (
        PRIVATE,
        200,
        {"type": "object", "additionalProperties": _ref("Balance")},
        {"INR": {"available": "1000000", "reserved": "0"}},
    ),
    ("post", "/api/v1/alerts"): (PRIVATE, 201, _ref("AlertAdded"), None),
    ("get", "/api/v1/alerts"): (PRIVATE, 200, _ref("AlertList"), {"active": [], "fired": []}),
    ("delete", "/api/v1/alerts/{alert_id}"): (PRIVATE, 200, _ref("Alert"), None),
}

ERRORS = {
    "400": "a usage error: the detail says what to send instead",
    "401": "no token, or a bad or expired one",
    "403": "the account is disabled",
    "404": "unknown symbol, market, order or alert (someone else's counts as unknown)",
    "409": "a conflict (too many alerts)",
    "413": "body too large",
    "422": "a body or parameter that does not decode, or an order the engine rejected",
    "429": "over the rate limit: see Retry-After",
    "503": "matching or the data store is not answering: retry",
}

NUMBER_OR_STRING = {"anyOf": [{"type": "string"}, {"type": "number"}]}


def _body_schema(struct: type, name: str) -> dict[str, Any]:
    schema = msgspec.json.schema(struct)["$defs"][name]
    props = schema["properties"]
    for field in ("qty", "price", "stop_price", "display_qty"):
        if field in props:
            nullable = field not in schema.get("required", [])
            props[field] = {"anyOf": [*NUMBER_OR_STRING["anyOf"], {"type": "null"}]} if nullable else NUMBER_OR_STRING
    enums = {"side": SIDES, "type": ORDER_TYPES, "tif": TIFS}
    for field, values in enums.items():
        if field in props:
            optional = field == "type"
            props[field] = {"enum": [*values, None] if optional else list(values)}
    return schema


ORDER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": _body_schema(OrderIn, "OrderIn"),
            "example": {"market": "TATA_INR", "side": "buy", "qty": "10", "price": "950.00", "tif": "gtc"},
        }
    },
}
AMEND_BODY = {
    "required": True,
    "content": {"application/json": {"schema": _body_schema(AmendIn, "AmendIn"), "example": {"price": "951"}}},
}
ALERT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["symbol", "condition"],
                "properties": {
                    "symbol": {"type": "string"},
                    "condition": {"enum": ["above", "below", "cross-sma"]},
                    "threshold": {"anyOf": [*NUMBER_OR_STRING["anyOf"], {"type": "null"}]},
                    "side": {"enum": ["buy", "sell", None]},
                },
                "additionalProperties": False,
            },
            "example": {"symbol": "AAPL", "condition": "above", "threshold": "230"},
        }
    },
}


def complete(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """FastAPI's ``spec`` with the responses, errors, security and bodies the API really has."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(response_schemas())
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "an access token"}
    }
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            who, status, schema, example = ROUTES.get((method, path), (PRIVATE, 200, {}, None))
            content: dict[str, Any] = {"schema": schema}
            if example is not None:
                content["example"] = example
            responses = {str(status): {"description": "OK", "content": {"application/json": content}}}
            if (path, method) == ("/api/v1/history/{symbol}", "get") or (path, method) == (
                "/api/v1/candles/{symbol}",
                "get",
            ):
                responses[str(status)]["headers"] = {
                    "X-Next-After": {"schema": {"type": "string"}, "description": "the next page's `after`"}
                }
            for code, why in ERRORS.items():
                responses[code] = {"description": why, "content": {"application/json": {"schema": _ref("Error")}}}
            op["responses"] = responses
            if who == PRIVATE or (who == MARKET and not settings.public_market_data):
                op["security"] = [{"bearer": []}]
            elif who == MARKET:
                op["security"] = [{"bearer": []}, {}]
    bodies = {
        ("/api/v1/orders", "post"): ORDER_BODY,
        ("/api/v1/orders/{order_id}", "patch"): AMEND_BODY,
        ("/api/v1/alerts", "post"): ALERT_BODY,
    }
    for (path, method), body in bodies.items():
        if method in spec.get("paths", {}).get(path, {}):
            spec["paths"][path][method]["requestBody"] = body
    return spec


def install(app: FastAPI, settings: Settings) -> None:
    """``app.openapi`` gives :func:`complete` of FastAPI's own spec, built once."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
